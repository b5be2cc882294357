"""Level 3's ``config``: the upstream experiment's training (per-pixel MSE, KL averaged over
latent dimensions with beta 0.5, probes x1, no output sigmoid, detach on the tokens only) beside
the isolated default, each piece checked on its own and one tiny run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from acc.data import Dataset, Split
from acc.executors.inline import InlineExecutor
from acc.model_output import ModelOutput
from acc.models import FactorSlotAutoencoder, build_model
from acc.recipes.gradient_gating_l3 import CONFIGS, L3Params
from acc.runner import ParamsError, create_run, execute_run
from acc.store import Store
from acc.tasks import disentanglement
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.traversal_specificity import TraversalSpecificityTask

TINY = {"steps": 4, "seeds": [1], "eval_every": 0, "batch_size": 16, "width": "small"}


def images(n: int = 6) -> Dataset:
    torch.manual_seed(0)
    x = (torch.rand(n, 1, 32, 32) > 0.7).float()
    labels = torch.zeros(n, dtype=torch.long)
    return Dataset("mnist", "32", Split(x, labels), Split(x, labels))


# --- the model without a sigmoid ------------------------------------------------------------


def test_a_linear_output_is_unbounded_and_the_reconstruction_metrics_clamp_it():
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small", output="linear").eval()
    data = images()
    with torch.no_grad():
        model.out.bias.fill_(3.0)  # every pixel well above white
        recon = model(data.test.images)[ModelOutput.RECONSTRUCTION]
    assert float(recon.min()) > 1.0
    metrics = ReconstructionTask("r", data, loss="mse").evaluate(model)
    # scored as the image it shows, all white: |1 - x| per pixel
    white_l1 = float((1.0 - data.test.images).abs().mean())
    assert metrics["l1"] == pytest.approx(white_l1, rel=1e-6)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / white_l1), rel=1e-6)  # x is 0/1


def test_output_and_detach_scope_are_in_the_config_and_bad_ones_are_refused():
    model = FactorSlotAutoencoder(width="small", detach_factor_grad=True, detach_scope="tokens",
                                  output="linear")  # fmt: skip
    twin = build_model(model.config())
    assert (twin.output, twin.detach_scope) == ("linear", "tokens")
    with pytest.raises(ValueError, match="unknown output 'tanh'; valid: sigmoid, linear"):
        FactorSlotAutoencoder(output="tanh")
    with pytest.raises(ValueError, match="valid: tokens_and_means, tokens"):
        FactorSlotAutoencoder(detach_scope="conv")


# --- the KL averaged over latent dimensions ------------------------------------------------


def test_the_kl_mean_over_dimensions_is_the_summed_kl_over_d_and_reports_the_same_metrics():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 20, 8, 8), torch.randn(3, 20, 8, 8) * 0.5  # D = 1,280
    out = {ModelOutput.MU: mu, ModelOutput.LOGVAR: logvar}
    data = images(3)
    summed = KLDivergenceTask("kl", data, weight=0.5).compute_loss(out, data.train.images)
    mean = KLDivergenceTask("kl", data, 0.5, reduction="mean").compute_loss(out, None)
    assert float(mean) == pytest.approx(float(summed) / 1280, rel=1e-6)
    # known values: mu = 1, var = 1 gives 0.5 nats in every dimension
    ones = {ModelOutput.MU: torch.ones(2, 4), ModelOutput.LOGVAR: torch.zeros(2, 4)}
    assert float(KLDivergenceTask("kl", data, reduction="mean").compute_loss(ones, None)) == 0.5
    model = FactorSlotAutoencoder(width="small")
    assert (
        KLDivergenceTask("kl", data, reduction="mean").evaluate(model)
        == KLDivergenceTask("kl", data).evaluate(model)
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown KL reduction 'max'; valid: sum, mean"):
        KLDivergenceTask("kl", data, reduction="max")


# --- what the detach scopes detach ---------------------------------------------------------


def decoder_gradient(**options) -> tuple[torch.Tensor, bool]:
    """d(sum of the reconstruction)/dz for one fixed model and z, and whether the token
    embedder's input still carried a gradient path back to z."""
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small", **options).eval()
    seen = []
    model.embed[0].register_forward_hook(lambda m, args, out: seen.append(args[0].requires_grad))
    z = torch.randn(2, 20, 8, 8, requires_grad=True)
    model.decode(z).sum().backward()
    return z.grad, all(seen)


def test_detach_scope_tokens_stops_only_the_tokens_gradient():
    plain, plain_tokens = decoder_gradient()
    tokens, tokens_tokens = decoder_gradient(detach_factor_grad=True, detach_scope="tokens")
    both, both_tokens = decoder_gradient(detach_factor_grad=True)  # tokens_and_means
    assert plain_tokens and not tokens_tokens and not both_tokens
    # A factor vector is its channel's spatial mean: its gradient is the sum over positions.
    to_means = {k: g.sum(dim=(2, 3)) for k, g in (("plain", plain), ("tokens", tokens),
                                                   ("both", both))}  # fmt: skip
    assert float(to_means["tokens"].abs().max()) > 1e-3  # the conv path still moves the means
    assert float(to_means["both"].abs().max()) < 1e-5
    # ... and what the tokens sent in the plain model is gone
    assert float((to_means["plain"] - to_means["tokens"]).abs().max()) > 1e-4


# --- the recipe's config --------------------------------------------------------------------


def test_upstream_resolves_to_the_upstream_values_and_explicit_ones_win():
    up = L3Params(config="upstream")
    assert (up.beta, up.probe_weight) == (0.5, 1.0)
    assert (L3Params().beta, L3Params().probe_weight) == (0.1, 20.0)
    mixed = L3Params(config="upstream", beta=0.2, probe_weight="")  # "" = an empty form field
    assert (mixed.beta, mixed.probe_weight) == (0.2, 1.0)
    assert L3Params(**mixed.model_dump()) == mixed  # the stored values validate to themselves
    assert CONFIGS["upstream"].detach_scope == "tokens" and CONFIGS["upstream"].output == "linear"


def test_an_unknown_config_is_refused_naming_the_valid_ones(tmp_path, tiny_mnist):
    store = Store(tmp_path / "store")
    with pytest.raises(ParamsError, match="config: Input should be 'isolated' or 'upstream'"):
        create_run(store, "gradient_gating_l3", {**TINY, "config": "plan"}, "cpu", tiny_mnist)
    assert store.list_runs() == []  # refused before anything was opened, let alone trained


def cheap_dci(*args) -> dict:
    return {"disentanglement": 0.5, "completeness": 0.5, "informativeness": 0.5}


@pytest.fixture(scope="module")
def upstream_run(tmp_path_factory, tiny_mnist):
    """One tiny run of the four conditions. The two costly final scores (gradient-boosted DCI,
    Morpho-MNIST measurements of every traversal image: 40 of this run's 45 s) are stubbed: they
    read posterior means and clamped traversals, the same under either config, and
    test_l3_recipe.py runs them for real. The traversals themselves are still decoded."""
    store = Store(tmp_path_factory.mktemp("upstream"))
    params = {**TINY, "config": "upstream"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(disentanglement, "dci", cheap_dci)
        patch.setattr(TraversalSpecificityTask, "slopes", lambda self, decoded, std: {
            f: float(decoded.max() <= 1.0) for f in std})  # fmt: skip
        run_id = create_run(store, "gradient_gating_l3", params, "cpu", tiny_mnist)
        return store, execute_run(store, run_id, InlineExecutor())


def test_a_tiny_upstream_run_completes_with_finite_metrics(upstream_run):
    _, results = upstream_run
    assert results["status"] == "completed", results.get("error")
    for entry in results["conditions"].values():
        metrics = entry["runs"][0]["metrics"]
        assert math.isfinite(metrics["psnr"]) and math.isfinite(metrics["kl[digit]"])
        assert 0.0 <= metrics["probe_accuracy[digit]"] <= 1.0
        assert metrics["traversal_specificity"] == 0.5  # decoded, clamped to [0, 1]


def test_the_upstream_run_stores_what_it_trained_with(upstream_run):
    store, results = upstream_run
    config = store.get_run(results["run_id"])["config"]
    assert (config["config"], config["beta"], config["probe_weight"]) == ("upstream", 0.5, 1.0)
    detach = results["conditions"]["detach"]["runs"][0]
    meta = store.checkpoints.get(detach["checkpoint_id"]).metadata
    assert meta["model"]["output"] == "linear" and meta["model"]["detach_scope"] == "tokens"
    assert meta["model"]["detach_factor_grad"] is True
    tasks = {t["name"]: t for t in meta["tasks"]}
    assert (tasks["reconstruction"]["loss"], tasks["reconstruction"]["reduction"]) == (
        "mse",
        "mean",
    )
    assert (tasks["kl"]["beta"], tasks["kl"]["reduction"]) == (0.5, "mean")
    assert tasks["digit"]["weight"] == tasks["slant"]["weight"] == 1.0
