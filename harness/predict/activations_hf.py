"""What autograd holds for backward in a decoder block, per block family, derived op by op from the tensors each op
saves (the way Korthikanti et al. 2022 count a GPT layer; REFERENCES.md §3), for `model=llama` and `model=hf`.

A `Block` says what sets a family apart; `t` = batch x sequence tokens, `e` the compute dtype's bytes. Every count
below was checked against the tracker's measurement of small CPU configurations (tests/test_hf_activations.py).
No torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.families.hf_config import CAUSAL_LM, SEQUENCE_CLASSIFICATION

# every other model_type: "llama" (bert's block has no closed form here: traced; its style names its LayerNorms and
# its head for the step's moments, harness/predict/timeline.py)
LLAMA_LIKE_STYLE = {"gemma2": "gemma", "gpt2": "gpt2", "bert": "bert"}


@dataclass(frozen=True)
class Block:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ff: int
    vocab: int
    # llama: RMSNorm in the model dtype | gemma: RMSNorm in fp32 with (1 + w) | gpt2, bert: LayerNorm
    style: str = "llama"
    qk_norm: bool = False  # qwen3: RMSNorm on each head's q and k
    fused_qkv: bool = False  # phi3: v is a view of qkv_proj's output, which it keeps alive
    # phi3's rotary concatenates rotated and passed-through halves: q leaves in (batch, heads, s, d) layout, the
    # fused kernel's output follows it and o_proj reads a contiguous copy instead of the output in place
    output_copied: bool = False
    attn_softcap: bool = False  # gemma2: tanh-capped attention scores (eager only)
    final_softcap: bool = False  # gemma2: tanh-capped logits
    dropout: float = 0.0  # gpt2: resid/embd dropout probability (attention dropout: attn_dropout)
    attn_dropout: float = 0.0
    head: str = CAUSAL_LM  # model.head: causal_lm | masked_lm (t x vocab logits) | sequence_classification
    labels: int = 0  # sequence_classification: the classes (b x labels logits)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def hf_block(model_type: str, shape: dict, data: dict, head: str = CAUSAL_LM) -> Block:
    """The Block of a resolved transformers config.json `data` (harness/families/hf_config.shape names its shapes)
    built with `head`."""
    return Block(
        hidden=shape["hidden_size"],
        layers=shape["num_layers"],
        heads=shape["num_heads"],
        kv_heads=shape["num_kv_heads"],
        head_dim=shape["head_dim"],
        ff=shape["intermediate_size"],
        vocab=shape["vocab_size"],
        style=LLAMA_LIKE_STYLE.get(model_type, "llama"),
        qk_norm=model_type == "qwen3",
        fused_qkv=model_type == "phi3",
        output_copied=model_type == "phi3",
        attn_softcap=data.get("attn_logit_softcapping") is not None,
        final_softcap=data.get("final_logit_softcapping") is not None,
        dropout=float(data.get("resid_pdrop") or 0.0) if model_type == "gpt2" else 0.0,
        attn_dropout=float(data.get("attn_pdrop") or 0.0) if model_type == "gpt2" else 0.0,
        head=head,
        labels=len(data.get("id2label") or {}) if head == SEQUENCE_CLASSIFICATION else 0,
    )


def logits_shape(k: Block, b: int, s: int) -> tuple[int, int]:
    """(rows, width) of the logits the loss reads: one row a token over the vocabulary (a causal or masked LM), or
    one a sequence over the classes (sequence classification, from the pooled first token)."""
    return (b, k.labels) if k.head == SEQUENCE_CLASSIFICATION else (b * s, k.vocab)


def label_bytes(k: Block, t: int) -> int:
    """The int64 labels the loss makes: a causal LM's shifted copy; a masked LM's and a classifier's are views of
    the caller's."""
    return t * 8 if k.head == CAUSAL_LM else 0


def rmsnorm_bytes(rows: int, width: int, e: int, output_saved: bool = True) -> int:
    """transformers' Llama RMSNorm: x.float() (the input itself in fp32), an fp32 rsqrt per row, x * rsqrt cast
    back to the model dtype (saved by weight * it), and its output (saved by the linears that read it; q/k norms'
    outputs go to rotary, which saves only cos and sin)."""
    return rows * width * 4 + rows * 4 + rows * width * e + (rows * width * e if output_saved else 0)


def gemma_norm_bytes(t: int, h: int, e: int, output_saved: bool) -> int:
    """Gemma2 RMSNorm, all in fp32: x.float(), rsqrt, the fp32 normalised x (saved by its product with 1 + w) and
    1 + w itself; the output cast to the model dtype is saved by the linears after input/pre-feed-forward norms."""
    return t * h * 4 + t * 4 + t * h * 4 + h * 4 + (t * h * e if output_saved else 0)


def layernorm_bytes(t: int, h: int, e: int) -> int:
    """nn.LayerNorm: its input, fp32 mean and rstd per row; its output is saved by the Conv1D after it."""
    return t * h * e + 2 * t * 4 + t * h * e


def mask_bytes(e: int, device_type: str) -> int:
    """A dropout mask per element: CUDA's fused native_dropout keeps a bool, the CPU path a float mask in the
    tensor's dtype (at::dropout: input * bernoulli noise)."""
    return 1 if device_type == "cuda" else e


def attention_bytes(k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str) -> int:
    """The attention block between the norm's output and the o_proj/c_proj input, included."""
    t, q, kv = b * s, k.q_dim, k.kv_dim
    scores = b * k.heads * s * s
    if k.style == "gpt2":
        qkv = t * 3 * q * e  # q, k and v are views of c_attn's output: one storage
        if attn == "eager":
            drop = scores * (mask_bytes(e, device_type) + e) if k.attn_dropout else 0
            return qkv + scores * e + drop + t * q * e
        if kernel == "math":  # SDPA's fallback, the CPU's choice under dropout: q, k, v scaled copies in fp32
            drop = scores * (4 + 4) if k.attn_dropout else 0
            return 3 * t * q * 4 + scores * 4 + drop + t * q * e
        return qkv + t * q * e + b * k.heads * s * 4
    grouped = k.heads != k.kv_heads
    # v as the projection left it: a view of phi3's fused qkv output keeps all of it alive
    v = t * (q + 2 * kv) * e if k.fused_qkv else t * kv * e
    norms = 0
    if k.qk_norm:
        norms = rmsnorm_bytes(t * k.heads, k.head_dim, e, False) + rmsnorm_bytes(t * k.kv_heads, k.head_dim, e, False)
    if attn == "eager":
        # repeat_kv copies k and v to every query head (a no-op without GQA); fp32 softmax (+ its 16-bit copy);
        # gemma2's soft-cap keeps tanh's output; the o_proj reads a contiguous copy of the output
        kv_saved = 2 * t * q * e if grouped else t * kv * e + v
        probs = scores * (4 + (e if e != 4 else 0)) + (scores * e if k.attn_softcap else 0)
        return norms + t * q * e + kv_saved + probs + t * q * e
    if kernel == "math":
        # SDPA's math kernel: q scaled, k repeated and scaled, v repeated, upcast to fp32; fp32 softmax
        return norms + 3 * t * q * 4 + scores * 4 + t * q * e
    # a fused kernel (flash, efficient, cudnn): rotated q and k, v, the output (read in place by o_proj), fp32 lse
    copy = t * q * e if k.output_copied else 0
    return norms + t * q * e + t * kv * e + v + t * q * e + copy + b * k.heads * s * 4


def layer_bytes(k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str) -> int:
    """One decoder layer in full training: norms, attention, MLP (and gpt2's dropout masks)."""
    t = b * s
    attention = attention_bytes(k, b, s, e, attn, kernel, device_type)
    if k.style == "gpt2":
        # gelu_new is a Python expression that keeps four 4h-wide tensors (input, tanh, 0.5x, 1 + tanh) where a
        # fused GELU keeps one; c_proj keeps its output; a dropout mask after attention and after the MLP
        masks = 2 * t * k.hidden * mask_bytes(e, device_type) if k.dropout else 0
        return 2 * layernorm_bytes(t, k.hidden, e) + attention + 5 * t * k.ff * e + masks
    # gated MLP: gate, act(gate), up and their product (phi3's gate and up are halves of one output: the same)
    mlp = 4 * t * k.ff * e
    if k.style == "gemma":
        norms = 2 * gemma_norm_bytes(t, k.hidden, e, True) + 2 * gemma_norm_bytes(t, k.hidden, e, False)
    else:
        norms = 2 * rmsnorm_bytes(t, k.hidden, e)
    return norms + attention + mlp


def head_bytes(k: Block, b: int, s: int, e: int, device_type: str) -> int:
    """After the layers: the final norm, the logits' soft-cap (gemma2: tanh's output), the fp32 log-softmax over
    the vocabulary, the shifted int64 labels and the loss's scalar; gpt2 adds its position ids (saved by the wpe
    embedding) and the embedding dropout's mask; bert (traced: what its head saved, for the moments) its head's
    inputs: the pooler's and the classifier's (b x h, tanh's output, a dropout mask), or the masked LM's
    transform (dense, GELU, LayerNorm) and decoder."""
    t = b * s
    if k.style == "bert":
        rows, width = logits_shape(k, b, s)
        if k.head == SEQUENCE_CLASSIFICATION:
            inputs = 3 * b * k.hidden * e + b * k.hidden * mask_bytes(e, device_type)
        else:
            inputs = layernorm_bytes(t, k.hidden, e) + 2 * t * k.hidden * e
        return inputs + rows * width * 4 + 8
    logits = t * k.vocab * 4 + t * 8 + 8 + (t * k.vocab * e if k.final_softcap else 0)
    if k.style == "gpt2":
        mask = t * k.hidden * mask_bytes(e, device_type) if k.dropout else 0
        return layernorm_bytes(t, k.hidden, e) + logits + s * 8 + mask
    if k.style == "gemma":
        return gemma_norm_bytes(t, k.hidden, e, True) + logits
    return rmsnorm_bytes(t, k.hidden, e) + logits


def rotary_bytes(k: Block, s: int, e: int) -> int:
    """cos and sin (1 x s x head_dim each), computed once per forward and saved by every layer's rotation."""
    return 0 if k.style == "gpt2" else 2 * s * k.head_dim * e


def frozen_base_saving(k: Block, b: int, s: int, e: int, device_type: str) -> int:
    """What a frozen base does not keep, against full training (LoRA/QLoRA without checkpointing):
    - a frozen RMSNorm weight needs no normalised input (-rows x width x e each; gemma: its fp32 normalised x);
      LayerNorm keeps what it kept (its input gradient needs it);
    - frozen lm_head: the final norm's output is not saved;
    - frozen embeddings: the first layer's input needs no gradient, so its first norm keeps nothing of its input
      (gpt2: nor the embedding dropout's mask, nor ln_1's statistics, nor the position ids)."""
    t, h = b * s, k.hidden
    if k.style == "gpt2":
        mask = t * h * mask_bytes(e, device_type) if k.dropout else 0
        return t * h * e + (t * h * e + 2 * t * 4) + mask + s * 8
    if k.style == "gemma":
        norms = (4 * k.layers + 1) * t * h * 4
        return norms + t * h * e + t * h * 4 + t * 4 + h * 4
    norms = (2 * k.layers + 1) * t * h * e
    if k.qk_norm:
        norms += k.layers * t * (k.heads + k.kv_heads) * k.head_dim * e
    return norms + t * h * e + t * h * 4 + t * 4


def full_training_bytes(k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str) -> int:
    return (
        k.layers * layer_bytes(k, b, s, e, attn, kernel, device_type)
        + head_bytes(k, b, s, e, device_type)
        + rotary_bytes(k, s, e)
    )


def checkpointed_bytes(k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str) -> int:
    """Checkpointing every decoder layer: each layer's input is kept (and the position ids every layer is given);
    the larger of the end of the forward (inputs + head) and one layer recomputed in backward (inputs + that
    layer, whose first norm reads the stored input itself in an fp32 model). Recomputation stops at the last
    tensor the layer saves (torch.utils.checkpoint's early stop); what that op reads and does not save is still
    alive then: gpt2's last is the MLP dropout's mask, beside the c_proj output it masks."""
    return max(checkpointed_parts(k, b, s, e, attn, kernel, device_type))


def checkpointed_parts(
    k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str
) -> tuple[int, int]:
    """checkpointed_bytes' two moments: (the end of the forward, one layer recomputed in backward)."""
    t = b * s
    stored = k.layers * t * k.hidden * e + rotary_bytes(k, s, e) + s * 8
    layer = layer_bytes(k, b, s, e, attn, kernel, device_type)
    shared = t * k.hidden * e if (e == 4 or k.style == "gpt2") else 0
    alive = t * k.hidden * e if (k.style == "gpt2" and k.dropout) else 0
    return stored + head_bytes(k, b, s, e, device_type), stored + layer - shared + alive


def frozen_checkpointed_parts(
    k: Block, b: int, s: int, e: int, attn: str, kernel: str | None, device_type: str, adapters: tuple[int, int]
) -> tuple[int, int, int]:
    """LoRA/QLoRA on every linear of a llama-like layer (gate and up apart), checkpointing every decoder layer:
    (the end of the forward, the peak while a layer is recomputed, what the recomputed layer holds once it is done).
    `adapters`: (every adapter's r-wide A outputs in one layer, down_proj's alone), in bytes.
    - the end of the forward: the layer inputs and the frozen head's count (a frozen final norm saves no normalised
      input, a frozen lm_head not its input);
    - the recomputed layer: full training's count less its norms' normalised inputs (frozen weights), plus the
      adapters' r-wide outputs; in fp32 the first norm's fp32 input is the stored input itself, and the residual
      sum is held as a temporary;
    - its peak: at up_proj's LoRA sum, where the base output, the scaled update and their sum are alive beside what
      is saved before it (not yet the gated product, up_proj's own output or down_proj's adapter input)."""
    t, h = b * s, k.hidden
    stored = k.layers * t * h * e + rotary_bytes(k, s, e) + s * 8
    norms = 2 * t * h * e + (t * (k.heads + k.kv_heads) * k.head_dim * e if k.qk_norm else 0)
    shared = 2 * t * h * 4 if e == 4 else 0
    saved = stored + layer_bytes(k, b, s, e, attn, kernel, device_type) - norms + adapters[0] - shared
    end_of_forward = stored + head_bytes(k, b, s, e, device_type) - 2 * t * h * e
    return end_of_forward, saved + t * k.ff * e - adapters[1], saved


def inference_bytes(k: Block, b: int, s: int, e: int, attn: str, adapters: bool) -> int:
    """The most an eval-mode forward (no KV cache, logits out) holds beyond the weights, counted from where its peak
    falls in the tracker's measurement of small CPU configurations: the input embeddings (held by the model's
    forward), the layer's input (held by the caller), its residual and the normalised input, with
    - in attention: q, k and v, and the rotary's three q-sized transients (q·cos, rotate_half(q), their sum);
    - in the MLP: act(gate), up and their product (phi3: its gate_up output, kept by the chunks' views; gpt2's
      gelu_new: its input, 0.5x, 1 + tanh and the product); an adapter or a 4-bit matmul adds one fp32 output
      of the first MLP linear beside the base one;
    - at the head: the final hidden state and the logits (twice with gemma2's soft-cap: x / cap, then tanh)."""
    t, h, q, kv = b * s, k.hidden, k.q_dim, k.kv_dim
    extra = rotary_bytes(k, s, e) + s * 8
    if k.style == "gpt2":
        base = 5 * t * h * e + s * h * e + s * 8  # + the position embeddings (s x h), added to every sequence
        return max(base + 4 * t * k.ff * e, base + t * k.vocab * e)
    first_mlp = 2 * k.ff if k.fused_qkv else k.ff
    mlp = 4 * t * h * e + (first_mlp + 2 * k.ff) * t * e + (t * first_mlp * 4 if adapters else 0)
    attention = 3 * t * h * e + t * (q + 2 * kv) * e + 3 * t * q * e + (t * h * 4 if adapters else 0)
    if attn == "eager":
        attention += 2 * b * k.heads * s * s * 4  # scores and the fp32 softmax at once (not measured at scale)
    head = 2 * t * h * e + t * k.vocab * e * (2 if k.final_softcap else 1)
    return max(mlp, attention, head) + extra
