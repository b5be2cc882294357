"""EvalMetric: every metric ACC reports, with its label and which direction is better.

The enum values are the keys used everywhere: results JSON, store, CLI and dashboard.
A metric measured on one of several layers is keyed ``"<value>[<layer label>]"``.
"""

from __future__ import annotations

from enum import Enum


class EvalMetric(str, Enum):
    L1 = "l1"
    PSNR = "psnr"
    WEIGHT_COSINE_SIM = "weight_cosine_sim"
    EFFECTIVE_RANK = "effective_rank"
    ACTIVATION_SPARSITY = "activation_sparsity"
    SPARSITY_VARIANCE = "sparsity_variance"
    DEAD_UNITS = "dead_units"
    EFFECTIVE_RANK_NORMALIZED = "effective_rank_normalized"
    WEIGHT_NORM_CONCENTRATION = "weight_norm_concentration"
    HOYER_SPARSITY = "hoyer_sparsity"
    GATE_ENTROPY = "gate_entropy"
    GATE_MAX = "gate_max"
    PROBE_ACCURACY = "probe_accuracy"
    PROBE_R2 = "probe_r2"
    MIG = "mig"
    DCI_DISENTANGLEMENT = "dci_disentanglement"
    DCI_COMPLETENESS = "dci_completeness"
    DCI_INFORMATIVENESS = "dci_informativeness"
    SAP = "sap"
    FACTOR_INFORMATIVENESS = "factor_informativeness"
    FACTOR_LEAKAGE = "factor_leakage"
    TRAVERSAL_SPECIFICITY = "traversal_specificity"
    KL = "kl"
    KL_PER_DIM = "kl_per_dim"
    ACTIVE_UNITS = "active_units"

    @property
    def label(self) -> str:
        return _INFO[self][0]

    @property
    def higher_is_better(self) -> bool | None:
        """True/False where one direction is better; None where neither is (e.g. KL)."""
        return _INFO[self][1]

    @property
    def is_count(self) -> bool:
        """A number of units: shown as a count (12, or a mean such as 11.5), not 12.0000."""
        return self in COUNTS

    def key(self, layer_label: str | None = None) -> str:
        """The results key: plain, or ``"<metric>[<layer label>]"`` for per-layer reports."""
        return self.value if layer_label is None else f"{self.value}[{layer_label}]"


COUNTS = frozenset({EvalMetric.DEAD_UNITS, EvalMetric.ACTIVE_UNITS})

_INFO: dict[EvalMetric, tuple[str, bool | None]] = {
    EvalMetric.L1: ("L1 error", False),
    EvalMetric.PSNR: ("PSNR (dB)", True),
    EvalMetric.WEIGHT_COSINE_SIM: ("Weight cosine similarity", False),
    EvalMetric.EFFECTIVE_RANK: ("Effective rank", True),
    EvalMetric.ACTIVATION_SPARSITY: ("Activation sparsity", False),
    # how much the active fraction varies over images: descriptive, neither direction better
    EvalMetric.SPARSITY_VARIANCE: ("Sparsity variance", None),
    EvalMetric.DEAD_UNITS: ("Dead units", False),
    EvalMetric.EFFECTIVE_RANK_NORMALIZED: ("Effective rank of unit-norm rows", True),
    EvalMetric.WEIGHT_NORM_CONCENTRATION: ("Squared weight norm in the top 10% rows", False),
    EvalMetric.HOYER_SPARSITY: ("Hoyer sparsity (1 = one channel)", True),
    EvalMetric.GATE_ENTROPY: ("Gate entropy (1 = uniform, 0 = one-hot)", None),
    EvalMetric.GATE_MAX: ("Gate max (1 = uniform, C = one-hot)", None),
    EvalMetric.PROBE_ACCURACY: ("Probe test accuracy", True),
    EvalMetric.PROBE_R2: ("Probe test R²", True),
    EvalMetric.MIG: ("Mutual information gap", True),
    EvalMetric.DCI_DISENTANGLEMENT: ("DCI disentanglement", True),
    EvalMetric.DCI_COMPLETENESS: ("DCI completeness", True),
    EvalMetric.DCI_INFORMATIVENESS: ("DCI informativeness", True),
    EvalMetric.SAP: ("SAP score", True),
    EvalMetric.FACTOR_INFORMATIVENESS: ("Own-group probe score", True),
    EvalMetric.FACTOR_LEAKAGE: ("Best other-group probe score", False),
    EvalMetric.TRAVERSAL_SPECIFICITY: ("Traversal specificity", True),
    EvalMetric.KL: ("KL (nats)", None),
    EvalMetric.KL_PER_DIM: ("KL per dimension", None),
    EvalMetric.ACTIVE_UNITS: ("Active units", True),
}


def split_key(key: str) -> tuple[EvalMetric | None, str | None]:
    """``"weight_cosine_sim[conv1]"`` -> (WEIGHT_COSINE_SIM, "conv1"); unknown -> (None, None)."""
    base, _, rest = key.partition("[")
    layer = rest[:-1] if rest.endswith("]") else None
    try:
        return EvalMetric(base), layer
    except ValueError:
        return None, None
