"""Gradient diagnostics the seeds make claims about: per-layer gradient norms against depth (vanishing /
exploding), and a finite-difference check of autograd with what it costs (2 forwards per parameter).

Runs after the timed loop, on a fresh forward+backward, only when `measure.gradients=true`.
"""

from __future__ import annotations

import copy
import re
import time

import torch

_LAYER = re.compile(r"layers\.(\d+)\.")
FD_ENTRIES = 16  # parameter entries checked by central differences (2 forwards each)
FD_EPS = 1e-6  # in float64: truncation error ~eps², rounding ~1e-16/eps, both far below the tolerance
# relative to the largest checked gradient; torch.autograd.gradcheck's default is rtol 1e-3. ReLU kinks
# inside [w - eps, w + eps] are what lifts the error above rounding.
FD_TOLERANCE = 1e-5


def layer_gradient_norms(model: torch.nn.Module) -> list[float]:
    """L2 norm of all gradients of each numbered layer (`layers.<i>.`), first layer first."""
    sums: dict[int, float] = {}
    for name, p in model.named_parameters():
        match = _LAYER.search(name)
        if match and p.grad is not None:
            sums[int(match[1])] = sums.get(int(match[1]), 0.0) + float(p.grad.detach().double().pow(2).sum())
    return [sums[i] ** 0.5 for i in sorted(sums)]


def norms_metrics(workload) -> dict:
    workload.reset_grads()
    workload.backward(workload.forward_loss())
    norms = layer_gradient_norms(workload.model)
    workload.reset_grads()
    out = {"layer_grad_norms": norms}
    if norms and norms[-1] > 0:
        out["first_to_last_layer_grad_norm_ratio"] = norms[0] / norms[-1]
    return out


def _central_differences(params: list, flat: list[int], loss) -> tuple[list[float], list[float]]:
    """(finite-difference, autograd) derivative of the loss at each flat parameter index, in order."""
    offsets, acc = [], 0
    for p in params:
        offsets.append(acc)
        acc += p.numel()
    fd, ad = [], []
    with torch.no_grad():
        for index in flat:
            i = max(k for k, off in enumerate(offsets) if off <= index)
            entry = params[i].view(-1)
            j = index - offsets[i]
            original = entry[j].item()
            entry[j] = original + FD_EPS
            up = loss().item()
            entry[j] = original - FD_EPS
            down = loss().item()
            entry[j] = original
            fd.append((up - down) / (2 * FD_EPS))
            ad.append(params[i].grad.view(-1)[j].item())
    return fd, ad


def finite_difference_check(workload, method: str) -> dict:
    """Central differences on FD_ENTRIES deterministically chosen parameter entries of a float64 copy of the
    model, against autograd on the same copy; and the time each costs."""
    if method not in ("full_adamw", "adamw8bit", "sgd"):
        return {"fd_unavailable_reason": f"{method}: quantized or adapter-wrapped models are not copied to float64"}
    if "x" not in workload.train_kwargs:
        # transformers computes the loss from logits.float(): float32 rounding would swamp the differences
        return {"fd_unavailable_reason": "the finite-difference check runs on the mlp (a small network)"}
    model = copy.deepcopy(workload.model).double().train()
    x = workload.train_kwargs["x"].double()
    target = workload.train_kwargs["target"].double()

    def loss() -> torch.Tensor:
        # the model's own loss casts to float32; the same MSE in float64 keeps the differences exact enough
        return torch.nn.functional.mse_loss(model(x), target)

    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    model.zero_grad(set_to_none=True)
    device = x.device
    # CUDA kernels run asynchronously: without a synchronize on both sides perf_counter times the launches
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    loss().backward()  # untimed: the first float64 pass loads kernels and library state the differences reuse
    model.zero_grad(set_to_none=True)
    sync()
    start = time.perf_counter()
    loss().backward()
    sync()
    backprop_s = time.perf_counter() - start
    flat = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:FD_ENTRIES].tolist()
    start = time.perf_counter()
    fd, ad = _central_differences(params, flat, loss)
    fd_s = time.perf_counter() - start
    forwards = 2 * len(flat)
    scale = max(max(abs(a) for a in ad), 1e-300)
    error = max(abs(f - a) for f, a in zip(fd, ad))
    per_forward_s = fd_s / forwards
    return {
        "fd_checked_entries": len(flat),
        "fd_forward_passes": forwards,
        "fd_seconds_s": fd_s,
        "fd_max_abs_error": error,
        "fd_max_rel_error": error / scale,
        "fd_agrees": error / scale <= FD_TOLERANCE,
        "fd_tolerance": FD_TOLERANCE,
        "backprop_fwd_bwd_float64_s": backprop_s,
        "trainable_params": total,
        "fd_full_gradient_forward_passes": 2 * total,
        # projected from the measured time per forward above, not timed: 2 x P forwards would take hours
        "fd_full_gradient_projected_s": per_forward_s * 2 * total,
        "fd_full_gradient_to_backprop_ratio": per_forward_s * 2 * total / backprop_s,
    }


def measure_gradients(workload, method: str) -> dict:
    return {**norms_metrics(workload), **finite_difference_check(workload, method)}
