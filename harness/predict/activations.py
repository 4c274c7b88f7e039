"""The analytic model's activation side: what autograd holds for backward, derived op by op from the saved
tensors of each op as PyTorch defines them, the way Korthikanti et al. 2022 count a GPT layer. No torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import families
from harness.config.rules import ADAPTER_METHODS, COMPUTE_BYTES, adapter_bytes, mlp_checkpoint_segments
from harness.families.hf_config import family
from harness.predict.activations_hf import (
    Block,
    checkpointed_parts,
    frozen_base_saving,
    frozen_checkpointed_parts,
    full_training_bytes,
)
from harness.predict.parameters import lora_targets, parameter_tensors

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig
    from harness.families.hf import HfModelConfig
    from harness.families.llama import LlamaModelConfig


def checkpoint_segments(cfg: BenchConfig) -> int:
    return mlp_checkpoint_segments(cfg.model.depth, cfg.checkpointing.segments)


def mlp_activation_bytes(cfg: BenchConfig) -> dict:
    """What autograd holds for backward in the default mlp (Linear + ReLU, no norm, no residual).

    Without checkpointing: each ReLU output (which the next Linear also saves: one storage), the network
    input (saved by the first Linear for its weight gradient, or by the first LoRA A), LoRA's r-wide
    intermediate per adapted layer, and the fp32 copy of the output that the MSE loss keeps.
    With checkpoint_sequential in k segments (the last one not checkpointed): at the end of the forward, the
    k-1 checkpointed segments' inputs, the last segment's own activations and input, and the loss copy; while
    a segment is recomputed in backward, the stored inputs plus that segment's activations.
    """
    model, method, precision = cfg.model, cfg.method.name, cfg.precision.name
    if model.activation != "relu" or model.norm or model.residual:
        return {"activations_bytes": None, "formula": "not modelled: only the default Linear+ReLU mlp is"}
    w, depth = model.width, model.depth
    tokens = cfg.workload.batch_size * cfg.workload.seq_len
    e = COMPUTE_BYTES[precision]
    unit = tokens * w * e
    per_layer = unit
    if method in ADAPTER_METHODS:
        per_layer += tokens * cfg.method.r * adapter_bytes(precision)
    # MSE on y.float(): the fp32 difference, plus the fp32 copy of y when the model is not fp32 (in fp32 the
    # copy is the last ReLU output itself)
    loss = tokens * w * 4 + (tokens * w * 4 if e != 4 else 0)
    if precision.startswith("amp"):
        if method in ADAPTER_METHODS or cfg.checkpointing.enabled:
            return {"activations_bytes": None, "formula": "not modelled: autocast with adapters or checkpointing"}
        # autocast keeps fp32 weights and saves the 16-bit copies it makes for backward: every layer's
        # weight copy except the first layer's (its input needs no gradient), and the input's cast
        return {
            "activations_bytes": depth * unit + unit + (depth - 1) * w * w * e + loss,
            "formula": "autocast: depth x ReLU output + input cast + (depth-1) 16-bit weight copies + loss",
        }
    if not cfg.checkpointing.enabled:
        return {
            "activations_bytes": depth * per_layer + unit + loss,
            "formula": "depth x (ReLU output [+ LoRA r-wide]) + input + fp32 loss copy",
        }
    k = min(checkpoint_segments(cfg), depth)
    size = depth // k
    last = depth - size * (k - 1)
    end_of_forward = (k - 1) * unit + last * per_layer + unit + loss
    recompute = (k - 1) * unit + size * per_layer
    return {
        "activations_bytes": max(end_of_forward, recompute),
        "end_of_forward_bytes": end_of_forward,
        "recompute_bytes": recompute,
        "formula": f"checkpoint_sequential, {k} segments: max(end of forward, recompute of one segment)",
    }


def transformer_block(model: LlamaModelConfig | HfModelConfig) -> tuple[Block, str, str]:
    """(Block, attention implementation, model_type) of a decoder's model section (its family makes the Block)."""
    return families.of(model).block(model)


def frozen_base_activations(cfg: BenchConfig, args: tuple) -> dict:
    """LoRA and QLoRA on the family's default targets: full training's count less what a frozen base does not keep
    (harness/predict/activations_hf.py, frozen_base_saving) plus each adapter's r-wide A output (saved by B, in the
    adapter dtype); under checkpointing (llama-like blocks) activations_hf.frozen_checkpointed_parts. `args` are
    full_training_bytes' arguments."""
    block, b, s, e, _, _, device_type = args
    targets = set(lora_targets(cfg))
    if targets != set(families.of(cfg.model).default_targets(cfg.model)):
        # other target sets change which frozen linears save their inputs: not derived yet
        return {"activations_bytes": None, "formula": "not derived: LoRA beyond the default targets"}
    adapted = sum(1 for t in parameter_tensors(cfg) if t.name in targets and t.linear_in)
    adapter_output = b * s * cfg.method.r * adapter_bytes(cfg.precision.name)
    adapters = adapted * adapter_output
    if cfg.checkpointing.enabled:
        if block.style != "llama" or block.fused_qkv:
            return {
                "activations_bytes": None,
                "formula": f"not derived: a frozen {block.style} base under checkpointing",
            }
        parts = frozen_checkpointed_parts(*args, (adapters // block.layers, adapter_output))
        return {
            "activations_bytes": max(parts[:2]),
            "end_of_forward_bytes": parts[0],
            "recompute_bytes": parts[1],
            "recompute_saved_bytes": parts[2],
            # the tracker files the residual sum a recomputation makes as a temporary: alive all the same
            "recompute_temporary_bytes": b * s * block.hidden * 4 if e == 4 else 0,
            "formula": "checkpointing per decoder layer, frozen base: layer inputs + max(frozen head, one frozen layer "
            "recomputed up to up_proj's LoRA sum)",
        }
    return {
        "activations_bytes": full_training_bytes(*args) - frozen_base_saving(block, b, s, e, device_type) + adapters,
        "formula": "full training's count - what a frozen base does not keep + t·r per adapter",
    }


def transformer_activations(cfg: BenchConfig, attention_kernel: str | None, device_type: str) -> dict:
    """A transformers causal LM (model=llama, model=hf): full training without or with checkpointing; LoRA and
    QLoRA as frozen_base_activations counts them. QLoRA counts as LoRA on a model in the dtype of the weights it does
    not quantize: fp32 in the upcast variant (prepare_model_for_kbit_training), bf16 in the bf16 one, so hidden
    states flow in that dtype, and bitsandbytes' 4-bit matmul saves only its packed weight."""
    precision, ckpt = cfg.precision.name, cfg.checkpointing.enabled
    if precision.startswith("amp"):
        # autocast saves 16-bit copies of weights and fp32 norms beside 16-bit matmuls: derived for the mlp only
        return {"activations_bytes": None, "formula": f"not derived: {cfg.model.name} under autocast"}
    block, attn, model_type = transformer_block(cfg.model)
    if family(model_type) is None:
        return {"activations_bytes": None, "formula": f"not derived: no block family for model_type {model_type}"}
    e = COMPUTE_BYTES[precision]
    args = (block, cfg.workload.batch_size, cfg.workload.seq_len, e, attn, attention_kernel, device_type)
    if cfg.method.name in ADAPTER_METHODS:
        out = frozen_base_activations(cfg, args)
        if out["activations_bytes"] is None:
            return out
    elif attention_kernel == "math" and ckpt and block.style != "gpt2":
        # the recompute's peak holds the math kernel's transient fp32 upcasts and s x s scores: not derived for
        # llama-like blocks; gpt2's count (the math kernel is what its dropout selects on a CPU) holds, measured
        return {"activations_bytes": None, "formula": "not derived: SDPA's math kernel under checkpointing"}
    elif ckpt:
        end_of_forward, recompute = checkpointed_parts(*args)
        out = {
            "activations_bytes": max(end_of_forward, recompute),
            "end_of_forward_bytes": end_of_forward,
            "recompute_bytes": recompute,
            "formula": "checkpointing per decoder layer: layer inputs + max(head, one recomputed layer)",
        }
    else:
        out = {
            "activations_bytes": full_training_bytes(*args),
            "formula": "layers x (norms + attention + MLP) + final norm + fp32 log-softmax + labels",
        }
    out["formula"] += f" [{block.style} block, {model_type}]"
    if attn == "sdpa":
        kernel = attention_kernel or "a fused kernel (assumed: the kernel that ran was not recorded)"
        out["formula"] += f"; SDPA {kernel}"
    return out


def activations(cfg: BenchConfig, attention_kernel: str | None = None, device_type: str = "cpu") -> dict:
    """What the training forward holds for backward, by the formula the model's family names; `attention_kernel`
    is the SDPA kernel that ran (the record's `resolved.attention_kernel.fwd_train`), None where it is not known
    (a fused one is assumed); `device_type` decides what a dropout mask takes (a bool on CUDA, the tensor's dtype
    on a CPU)."""
    return families.of(cfg.model).activations(cfg, attention_kernel, device_type)


def activation_bytes(cfg: BenchConfig, attention_kernel: str | None = None, device_type: str = "cpu") -> int | None:
    return activations(cfg, attention_kernel, device_type)["activations_bytes"]
