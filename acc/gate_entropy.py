"""The mask of a gate whose selectivity is set: softmax(strength / T) with T chosen, per row,
so that the mask's normalised entropy is a target H (DESIGN.md, "Target entropy").

Three searches for T, all well within the 0.01 the design asks (tests/test_gate_controls.py):

- one row on the CPU (mode batch: a step's one mask per layer), safeguarded Newton steps on
  log(1 / T) in Python floats, stopped once the next step's entropy error, predicted from the
  curvature, is below 1e-4, starting from the last step's answer (``WarmStart``): usually
  one pass over the channels, then the same softmax a fixed temperature takes. Python
  floats, because a training step leaves the caches cold for code it does not run itself:
  numpy's first calls in a step cost 10-50 us each there (their cost in a loop of their own
  is 1 us), and the gate's search must stay within 3% of a ~1 ms step
  (bench/bench_trainer.py);
- many rows on the CPU (mode sample), the same Newton steps vectorised in float64 numpy,
  stopped when every row's entropy is within 1e-4 of the target;
- on other devices, a fixed grid of log(1 / T) with linear interpolation: the same work and
  the same few kernels every step, and no host sync (a GPU would wait on every Newton test).

Each first shifts and scales a row of strengths to x in [-1, 0], so one bracket of 1 / T
(e^-4 to e^12 in those units) fits every layer whatever its activations' scale; equal
strengths give the uniform mask. With z = u x <= 0 (u = 1 / T) and S = sum e^z, the entropy
in nats is log S - u (sum e^z x) / S; its slope in log u is -u^2 Var_p(x) and its curvature
-2 u^2 Var_p(x) - u^3 k3, with k3 the third central moment of x under p.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import mul

import numpy as np
import torch

# the bracket of log(1 / T) the searches stay in, and the grid's number of points in it
LOG_U_RANGE = (-4.0, 12.0)
ENTROPY_GRID = 128
# Newton's stop: an entropy error (normalised) of at most TOLERANCE, or MAX_ITERATIONS steps
TOLERANCE, MAX_ITERATIONS = 1e-4, 40
# a step is taken unchecked only from within this of the goal (normalised): see _newton_log_u
UNCHECKED_FROM = 1e-2
# softmax inputs up to this size keep float32's rounding (2^-24 of it) below 2e-5
LARGEST_LOGIT = 256.0


class WarmStart:
    """The last step's log(1 / T) of a one-row search (in the units of x in [-1, 0]), where
    the next step's search starts: a layer's activations move little from one step to the
    next, so one Newton pass usually meets the goal. A gate keeps one per layer and saves it
    in its resume point, so a resumed branch searches exactly as an uninterrupted one."""

    def __init__(self) -> None:
        self.log_u: float | None = None

    def state_dict(self) -> dict:
        return {"log_u": self.log_u}

    def load_state_dict(self, state: dict) -> None:
        self.log_u = state["log_u"]


def probabilities_at_entropy(
    strength: torch.Tensor, target: float, warm: WarmStart | None = None
) -> torch.Tensor:
    """softmax(strength / T) over the last dimension, with T set per row so that the
    normalised entropy is ``target``; shape and dtype of ``strength``. Which search runs
    depends on the device and the number of rows (module docstring); a one-row search on the
    CPU starts from ``warm`` and leaves its answer there."""
    if strength.device.type != "cpu" or not strength.is_floating_point():
        return probabilities_at_entropy_grid(strength, target)
    if strength.numel() == strength.shape[-1]:
        return probabilities_at_entropy_one_row(strength, target, warm)
    if strength.dtype in (torch.float32, torch.float64):
        return probabilities_at_entropy_rows(strength, target)
    return probabilities_at_entropy_grid(strength, target)


def probabilities_at_entropy_one_row(
    strength: torch.Tensor, target: float, warm: WarmStart | None = None
) -> torch.Tensor:
    """One row ([C] or [1, C]) on the CPU: 1 / T found in Python floats (starting from
    ``warm`` where given, and left there), then the softmax."""
    values = (strength if strength.dim() == 1 else strength.reshape(-1)).tolist()
    high, low = max(values), min(values)
    if high == low:  # equal strengths: no T changes the mask
        return torch.softmax(strength * 0.0, dim=-1)
    scale = 1.0 / (high - low)
    x = [(value - high) * scale for value in values]  # in [-1, 0]
    log_u = _newton_log_u(x, target, warm.log_u if warm is not None else None)
    if warm is not None:
        warm.log_u = log_u
    factor = math.exp(log_u) * scale  # 1 / T
    if abs(high) * factor > LARGEST_LOGIT:  # strengths far from 0 for their spread: shift them
        return torch.softmax((strength - high) * factor, dim=-1)
    return torch.softmax(strength * factor, dim=-1)  # the two kernels of a fixed temperature


def _newton_log_u(x: list[float], target: float, start: float | None = None) -> float:
    """log u at which softmax(u x) has normalised entropy ``target`` (x in [-1, 0], max 0).

    Newton's step, replaced by the bracket's midpoint when it would leave the bracket or not
    halve it (so it always converges; the bracket [low, high] holds the root, the entropy
    being above the goal at low). A pass that finds the entropy within the tolerance ends the
    search there (a warm start's usual case: one pass). Otherwise the last step is taken
    without a pass to check it: from
    within 0.01 of the goal, where the entropy's curvature predicts the step's error
    (0.5 f'' step^2) well, once that prediction is below the tolerance (far from the goal, near
    the curve's inflection, a small curvature would promise too much). The start is ``start``
    (the last step's answer) where given, else where the small-u expansion
    log C - u^2 Var(x) / 2 meets the goal.
    """
    channels = len(x)
    goal, tolerance = target * math.log(channels), TOLERANCE * math.log(channels)
    unchecked_from = UNCHECKED_FROM * math.log(channels)
    low, high = LOG_U_RANGE
    if start is None:
        mean = sum(x) / channels
        variance = max(sum(map(mul, x, x)) / channels - mean * mean, 1e-300)
        start = 0.5 * math.log(2.0 * (math.log(channels) - goal) / variance)
    log_u = min(max(start, low), high)
    for _ in range(MAX_ITERATIONS):
        u = math.exp(log_u)
        e = list(map(math.exp, map(mul, x, repeat(u))))  # e^z <= 1, one of them 1
        ex = list(map(mul, e, x))
        total = sum(e)
        mean = sum(ex) / total
        error = math.log(total) - u * mean - goal  # entropy - goal, nats
        if abs(error) <= tolerance:  # met already (a warm start, usually): no step needed
            return log_u
        second = sum(map(mul, ex, x)) / total
        slope = u * u * (second - mean * mean)  # minus d entropy / d log u, >= 0
        if error > 0:
            low = log_u
        else:
            high = log_u
        if slope <= 0 and error > 0:
            break  # the mask no longer changes with T (ties at the top): as low as it goes
        step = log_u + error / slope if slope > 0 else high + 1.0
        if not (low <= step <= high and abs(step - log_u) <= 0.5 * (high - low)):
            log_u = 0.5 * (low + high)
            continue
        if abs(error) <= unchecked_from:  # might this step be the last?
            third = sum(map(mul, map(mul, ex, x), x)) / total
            skew = third - 3.0 * mean * second + 2.0 * mean**3
            curvature = -2.0 * slope - u**3 * skew  # d^2 entropy / d log u^2
            if abs(0.5 * curvature * (step - log_u) ** 2) <= tolerance:
                return step
        log_u = step
    return log_u


def probabilities_at_entropy_rows(strength: torch.Tensor, target: float) -> torch.Tensor:
    """Many rows on the CPU: the Newton steps of ``_newton_log_u`` vectorised in float64
    numpy, every row's entropy checked at the end of each (no curvature prediction)."""
    values = (strength.detach() if strength.requires_grad else strength).numpy()
    channels = values.shape[-1]
    rows = values.reshape(-1, channels)  # [R, C]
    high = rows.max(axis=-1, keepdims=True)
    spread = np.maximum(high - rows.min(axis=-1, keepdims=True), 1e-12)
    # [R, 3, C]: 1, x and x^2 with x in [-1, 0], so that one matmul with e^z gives S, S m1, S m2
    moments = np.empty((len(rows), 3, channels))
    moments[:, 0] = 1.0
    x = np.subtract(rows, high, out=moments[:, 1])
    x /= spread
    np.multiply(x, x, out=moments[:, 2])
    p = _newton_rows(moments, target * math.log(channels))
    return torch.from_numpy(p.astype(values.dtype, copy=False).reshape(values.shape))


def _newton_rows(moments: np.ndarray, goal: float) -> np.ndarray:
    """The masks [R, C] at the entropy goal (nats) of the rows ``moments`` [R, 3, C] (1, x,
    x^2); a row that has met the goal keeps its log u while the others go on."""
    rows, x, channels = len(moments), moments[:, 1], moments.shape[-1]
    low, high = np.full(rows, LOG_U_RANGE[0]), np.full(rows, LOG_U_RANGE[1])
    _, first, second = moments.sum(axis=-1).T / channels  # each [R]: means at u = 0
    variance = np.maximum(second - first * first, 1e-300)
    start = 0.5 * np.log(2.0 * (math.log(channels) - goal) / variance)
    log_u = np.clip(start, *LOG_U_RANGE)
    tolerance = TOLERANCE * math.log(x.shape[-1])
    for _ in range(MAX_ITERATIONS):
        u = np.exp(log_u)
        e = np.exp(x * u[:, None])  # [R, C]
        total, first, second = np.matmul(moments, e[:, :, None])[:, :, 0].T  # each [R]
        mean = first / total
        error = np.log(total) - u * mean - goal
        slope = u * u * (second / total - mean * mean)
        above = error > 0
        done = (np.abs(error) <= tolerance) | (above & (slope <= 0))
        if done.all():
            break
        low, high = np.where(above, log_u, low), np.where(above, high, log_u)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(slope > 0, log_u + error / slope, high + 1.0)
        halves = (low <= step) & (step <= high) & (np.abs(step - log_u) <= 0.5 * (high - low))
        log_u = np.where(done, log_u, np.where(halves, step, 0.5 * (low + high)))
    return e / total[:, None]


_LOG_U_GRID: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _log_u_grid(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid's points log(1 / T) and 1 / T, made once per device and dtype."""
    key = (str(device), dtype)
    if key not in _LOG_U_GRID:
        log_u = torch.linspace(*LOG_U_RANGE, ENTROPY_GRID, device=device, dtype=dtype)
        _LOG_U_GRID[key] = (log_u, log_u.exp())
    return _LOG_U_GRID[key]


def probabilities_at_entropy_grid(strength: torch.Tensor, target: float) -> torch.Tensor:
    """The device search, fixed work and no host sync: the entropy at GRID points of
    log(1 / T) at once, the pair of neighbours that brackets the target, and linear
    interpolation inside that bracket (the entropy matches the target to 0.004)."""
    channels = strength.shape[-1]
    rows = strength.reshape(-1, channels)  # [R, C]: R = 1 (mode batch) or B (mode sample)
    low, high = torch.aminmax(rows, dim=-1, keepdim=True)
    x = (rows - high).div_((high - low).clamp_min_(1e-12))  # [R, C] in [-1, 0]
    log_u, u = _log_u_grid(x.device, x.dtype)  # [K]
    # e^z with z >= -80: below that exp gives subnormal floats, 4x slower and no help to sums
    e = (x.unsqueeze(1) * u.unsqueeze(-1)).clamp_min_(-80.0).exp_()  # [R, K, C]
    total = e.sum(dim=-1)  # [R, K]
    entropy = total.log() - u * torch.matmul(e, x.unsqueeze(-1)).squeeze(-1) / total  # nats
    goal = target * math.log(channels)
    above = (entropy > goal).sum(dim=-1, keepdim=True).clamp_(1, ENTROPY_GRID - 1)  # [R, 1]
    first, second = entropy.gather(-1, above - 1), entropy.gather(-1, above)
    fraction = ((first - goal) / (first - second).clamp_min(1e-12)).clamp_(0.0, 1.0)
    chosen = log_u[above - 1] + fraction * (log_u[1] - log_u[0])  # [R, 1]
    return torch.softmax(x * chosen.exp(), dim=-1).reshape(strength.shape)
