"""Adam for a whole stack in one update: each member's own Adam, done as a few kernels.

A stack of K branches took K optimizer steps of a few parameters each, a kernel per tensor
operation: about a third of a joint step's time at level 0. Adam is elementwise, so the
same arithmetic on the stacked tensors [K, ...] gives each member the numbers its own Adam
would (bit-identical on the CPU: tests/test_stacked.py), with each member's learning rate
and step count (members resumed at other steps keep theirs) as per-member factors.

The members' optimizers stay the record: their state tensors (``step``, ``exp_avg``,
``exp_avg_sq``) become views of the stacked ones, so a resume point taken from a member's
optimizer holds its current state. Only plain Adam qualifies (one parameter group holding
the model's parameters; no weight decay, amsgrad, maximize, capturable, differentiable or
fused): anything else steps each member's own optimizer.
"""

from __future__ import annotations

import torch

UNSUPPORTED = ("amsgrad", "maximize", "capturable", "differentiable", "fused")


def stackable(optimizers: list[torch.optim.Optimizer], parameters: list[list]) -> bool:
    """Whether one stacked update can stand for these members' optimizers."""
    first = optimizers[0].param_groups[0] if optimizers else None
    for optimizer, params in zip(optimizers, parameters):
        if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
            return False
        group = optimizer.param_groups[0]
        if [id(p) for p in group["params"]] != [id(p) for p in params]:
            return False  # a probe's weights, or another order
        if any(group.get(flag) for flag in UNSUPPORTED) or group["weight_decay"] != 0:
            return False
        if group["betas"] != first["betas"] or group["eps"] != first["eps"]:
            return False
    return True


class StackedAdam:
    """The members' Adam states stacked per parameter name, each member's a view of its row."""

    def __init__(self, optimizers: list, parameters: list[dict], stacked: dict) -> None:
        self.optimizers = optimizers
        group = optimizers[0].param_groups[0]
        self.beta1, self.beta2 = group["betas"]
        self.eps = group["eps"]
        self.params = stacked  # name -> P [K, ...], the stack's parameters
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        for name in stacked:
            states = [_state(opt, named[name]) for opt, named in zip(optimizers, parameters)]
            self.state[name] = {
                key: torch.stack([s[key] for s in states])
                for key in ("step", "exp_avg", "exp_avg_sq")
            }
            for k, state in enumerate(states):
                for key, rows in self.state[name].items():
                    state[key] = rows[k]  # the member's optimizer holds views of the rows

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step for every member, with its own lr and step count (the arithmetic
        of torch.optim.Adam's single-tensor path, row by row)."""
        lrs = [opt.param_groups[0]["lr"] for opt in self.optimizers]
        for name, param in self.params.items():
            grad, state = param.grad, self.state[name]
            state["step"] += 1
            steps = state["step"].tolist()
            shape = (-1, *([1] * (param.dim() - 1)))
            step_size = [-(lr / (1 - self.beta1**step)) for lr, step in zip(lrs, steps)]
            correction = [(1 - self.beta2**step) ** 0.5 for step in steps]
            step_size = torch.tensor(step_size, dtype=param.dtype, device=param.device)
            correction = torch.tensor(correction, dtype=param.dtype, device=param.device)
            state["exp_avg"].lerp_(grad, 1 - self.beta1)
            state["exp_avg_sq"].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (state["exp_avg_sq"].sqrt() / correction.view(shape)).add_(self.eps)
            # addcdiv_(exp_avg, denom, value=v) computes p + (v * exp_avg) / denom
            param.add_(state["exp_avg"].mul(step_size.view(shape)).div_(denom))


def _state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    """The parameter's Adam state, made as Adam makes it before its first step."""
    state = optimizer.state[param]
    if not state:
        state["step"] = torch.tensor(0.0, dtype=torch.get_default_dtype())
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state
