"""A trace that predicts a CUDA run makes CUDA's choices (harness/measure/cuda_ops.py): the fused dropout's one-byte
mask, and autocast's fp32 ops. The lists are checked against the installed torch's own CUDA autocast kernels (run on
fake CUDA tensors: the dispatcher's AutocastCUDA key needs no device), the saved bytes by hand, and the trace against
a CPU run measured with the same choices; on a GPU, against the CUDA run itself."""

import pytest
import torch
import torch.nn.functional as F
from support import build
from test_hf_activations import measured_activations
from torch._subclasses.fake_tensor import FakeTensorMode

from harness.measure.cuda_ops import FP32_CAST, FP32_DTYPE, cuda_op_choices
from harness.measure.traced import traced_activations

ROWS, WIDTH = 4, 8
# each listed op as a model calls it (looked up at the call, as a model's code does); below, ops that neither list
# holds (CUDA and CPU autocast agree on them)
CALLS = {
    "pow": lambda x: x**3,
    "exp": lambda x: torch.exp(x),
    "log": lambda x: x.log(),
    "rsqrt": lambda x: torch.rsqrt(x),
    "reciprocal": lambda x: torch.reciprocal(x),
    "expm1": lambda x: torch.expm1(x),
    "log1p": lambda x: torch.log1p(x),
    "layer_norm": lambda x: F.layer_norm(x, (WIDTH,)),
    "group_norm": lambda x: F.group_norm(x, 2),
    "rms_norm": lambda x: F.rms_norm(x, (WIDTH,)),
    "softplus": lambda x: F.softplus(x),
    "norm": lambda x: x.norm(dim=-1),
    "logsumexp": lambda x: torch.logsumexp(x, -1),
    "softmax": lambda x: F.softmax(x, dim=-1),
    "log_softmax": lambda x: x.log_softmax(-1),
    "sum": lambda x: x.sum(-1),
    "cumsum": lambda x: torch.cumsum(x, -1),
}
AGREED = {
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "mean": lambda x: x.mean(-1),
    "sqrt": torch.sqrt,
    "div": lambda x: x / 3,
    "matmul": lambda x: x @ x.T,
    "cross_entropy": lambda x: F.cross_entropy(x, torch.zeros(ROWS, dtype=torch.long, device=x.device)),
}
HALVES = [torch.float16, torch.bfloat16]


def _cuda_autocast_dtype(call, dtype: torch.dtype) -> torch.dtype:
    """The output dtype of `call` under CUDA's autocast kernels, on a fake CUDA tensor (torch.autocast("cuda")
    turns itself off without a device; the dispatcher's state is set directly)."""
    with FakeTensorMode():
        x = torch.empty(ROWS, WIDTH, device="cuda", dtype=dtype)
        torch.set_autocast_enabled("cuda", True)
        torch.set_autocast_dtype("cuda", dtype)
        try:
            return call(x).dtype
        finally:
            torch.set_autocast_enabled("cuda", False)


def _cpu_autocast_dtype(call, dtype: torch.dtype) -> torch.dtype:
    with torch.autocast("cpu", dtype=dtype):
        return call(torch.ones(ROWS, WIDTH, dtype=dtype)).dtype


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_the_lists_are_what_cuda_autocast_runs_in_fp32_and_cpu_autocast_does_not(dtype):
    assert sorted(CALLS) == sorted(FP32_CAST + FP32_DTYPE)
    for name, call in CALLS.items():
        assert _cuda_autocast_dtype(call, dtype) == torch.float32, name
        assert _cpu_autocast_dtype(call, dtype) == dtype, name
        with cuda_op_choices():
            assert _cpu_autocast_dtype(call, dtype) == torch.float32, name
    for name, call in AGREED.items():  # nothing to patch: both autocasts give the same dtype
        assert _cuda_autocast_dtype(call, dtype) == _cpu_autocast_dtype(call, dtype), name
        with cuda_op_choices():
            assert _cpu_autocast_dtype(call, dtype) == _cuda_autocast_dtype(call, dtype), name


def _saved_bytes(fn, x: torch.Tensor) -> int:
    """Bytes autograd saves for backward while `fn(x)` runs (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t is not x:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(seen.values())


def test_the_saved_bytes_by_hand():
    n = 64 * 32
    x = torch.randn(64, 32, requires_grad=True)
    drop = lambda t: F.dropout(t, 0.1, training=True)  # noqa: E731
    assert _saved_bytes(drop, x) == 4 * n  # the CPU's mask: fp32, as the input
    with cuda_op_choices():
        assert _saved_bytes(drop, x) == n  # CUDA's fused kernel: one byte a value
        assert _saved_bytes(lambda t: F.dropout(t, 0.1, training=False), x) == 0
    half = torch.randn(64, 32, dtype=torch.bfloat16, requires_grad=True)
    softmax = lambda t: F.softmax(t, dim=-1)  # noqa: E731
    norm = lambda t: F.layer_norm(t, (32,))  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _saved_bytes(softmax, half) == 2 * n  # its bf16 output
        with cuda_op_choices():
            assert _saved_bytes(softmax, half) == 4 * n  # its fp32 output, from dtype=fp32: no input copy kept
            # the fp32 copy of its input, and a mean and a reciprocal std per row
            assert _saved_bytes(norm, half) == 4 * n + 2 * 4 * 64
    with cuda_op_choices():  # outside autocast nothing changes
        assert _saved_bytes(softmax, half) == 2 * n


TINY_BERT = ["model=hf", "model.preset=tiny-bert", "model.attn_implementation=eager", "workload.batch_size=2"]
SETUPS = [
    ["precision=fp32"],
    ["precision=amp_fp16"],
    ["precision=amp_bf16", "checkpointing=on"],  # the recomputation makes the same choices
    ["precision=amp_fp16", "checkpointing=on", "workload.zero_grad=zeros"],
]


@pytest.mark.parametrize("extra", SETUPS, ids=" ".join)
def test_the_cuda_trace_is_a_cpu_run_measured_with_the_same_choices(extra):
    cfg, _, workload = build([*TINY_BERT, "workload.seq_len=64", *extra])
    traced = traced_activations(cfg, "cuda")
    assert "with CUDA's op choices" in traced["formula"]
    with cuda_op_choices():
        assert measured_activations(workload) == traced["activations_bytes"]
    cpu = traced_activations(cfg, "cpu")["activations_bytes"]
    assert cpu != traced["activations_bytes"]  # the masks' bytes, and under autocast fp32 softmax and norms


def test_at_fp32_the_difference_is_the_dropout_masks_by_hand():
    """tiny-bert (2 layers, 4 heads, width 64), b 2, s 64, p 0.1: per layer the attention probabilities' mask
    (b x heads x s x s) and two hidden-state masks (b x s x width), one after the embeddings, and the classifier's
    on the pooled output (b x width); each 4 bytes on the CPU, 1 on CUDA."""
    cfg = build([*TINY_BERT, "workload.seq_len=64", "precision=fp32"])[0]
    masks = 2 * (2 * 4 * 64 * 64 + 2 * 2 * 64 * 64) + 2 * 64 * 64 + 2 * 64
    cpu, cuda = (traced_activations(cfg, d)["activations_bytes"] for d in ("cpu", "cuda"))
    assert cpu - cuda == 3 * masks


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("extra", SETUPS, ids=" ".join)
def test_the_cuda_trace_against_the_cuda_run(extra):
    cfg = build([*TINY_BERT, "workload.seq_len=64", *extra])[0]
    workload = build([*TINY_BERT, "workload.seq_len=64", "device=cuda", *extra])[2]
    # the allocator rounds each block to 512 bytes: within 2% at these sizes
    assert measured_activations(workload) == pytest.approx(traced_activations(cfg, "cuda")["activations_bytes"], 0.02)
