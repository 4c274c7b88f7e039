"""`model=hf` presets: each release's config.json (the Hugging Face hub file named above each entry), keys and values
as the file writes them, weights not included. transformers builds the model from these exactly as from the file
(`model.config=PATH` takes a local config.json the same way).

Kept: every key that sets a shape or changes what the forward computes (widths, heads, head_dim, vocabulary,
tied embeddings, rope, norms' eps, biases, dropouts, soft-caps, sliding windows). Left out: token ids,
`torch_dtype` (the case's `precision` chooses the dtype), `transformers_version`, `use_cache`, `initializer_range`
(weights are random either way). tests/test_hf_models.py holds each preset's parameter count, from the model built
on the meta device, to the published total.

The `tiny-*` presets are no release: one small configuration per architecture for CPU tests and the
architectures-cpu suite, each keeping what sets its family apart (GQA, biases, q/k norms, head_dim != hidden/heads,
soft-caps, sliding windows, fused projections, Conv1D and dropout, an encoder).
"""

from __future__ import annotations

# Keys every release of a family writes alike; each preset below adds its own.
_LLAMA3 = dict(
    model_type="llama",
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-05,
    rope_theta=500000.0,
    attention_bias=False,
    mlp_bias=False,
    hidden_act="silu",
)
_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0}
_QWEN25 = dict(
    model_type="qwen2",
    rope_theta=1000000.0,
    use_sliding_window=False,
    attention_dropout=0.0,
    hidden_act="silu",
)
_GEMMA2 = dict(
    model_type="gemma2",
    head_dim=256,
    vocab_size=256000,
    max_position_embeddings=8192,
    rms_norm_eps=1e-06,
    rope_theta=10000.0,
    attention_bias=False,
    attention_dropout=0.0,
    query_pre_attn_scalar=256,
    sliding_window=4096,
    attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0,
    hidden_activation="gelu_pytorch_tanh",
    tie_word_embeddings=True,
)
_BERT = dict(
    model_type="bert",
    vocab_size=30522,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    layer_norm_eps=1e-12,
    position_embedding_type="absolute",
)
_GPT2 = dict(
    model_type="gpt2",
    n_positions=1024,
    n_ctx=1024,
    vocab_size=50257,
    activation_function="gelu_new",
    attn_pdrop=0.1,
    embd_pdrop=0.1,
    resid_pdrop=0.1,
    layer_norm_epsilon=1e-05,
)

HF_PRESETS: dict[str, dict] = {
    # meta-llama/Llama-3.2-1B config.json
    "llama-3.2-1b": dict(
        _LLAMA3,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        rope_scaling={**_LLAMA3_ROPE, "factor": 32.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True,
    ),
    # meta-llama/Llama-3.2-3B config.json
    "llama-3.2-3b": dict(
        _LLAMA3,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        rope_scaling={**_LLAMA3_ROPE, "factor": 32.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True,
    ),
    # meta-llama/Llama-3.1-8B config.json
    "llama-3.1-8b": dict(
        _LLAMA3,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rope_scaling={**_LLAMA3_ROPE, "factor": 8.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=False,
    ),
    # meta-llama/Llama-3.1-70B config.json
    "llama-3.1-70b": dict(
        _LLAMA3,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        rope_scaling={**_LLAMA3_ROPE, "factor": 8.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=False,
    ),
    # Qwen/Qwen2.5-0.5B config.json (q, k, v projections carry biases in every Qwen2)
    "qwen2.5-0.5b": dict(
        _QWEN25,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rms_norm_eps=1e-06,
        sliding_window=32768,
        max_window_layers=24,
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen2.5-7B config.json
    "qwen2.5-7b": dict(
        _QWEN25,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=131072,
        rms_norm_eps=1e-06,
        sliding_window=131072,
        max_window_layers=28,
        tie_word_embeddings=False,
    ),
    # Qwen/Qwen2.5-14B config.json
    "qwen2.5-14b": dict(
        _QWEN25,
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=48,
        num_attention_heads=40,
        num_key_value_heads=8,
        vocab_size=152064,
        max_position_embeddings=131072,
        rms_norm_eps=1e-05,
        sliding_window=131072,
        max_window_layers=48,
        tie_word_embeddings=False,
    ),
    # Qwen/Qwen3-8B config.json (RMSNorm on each head's q and k; head_dim given)
    "qwen3-8b": dict(
        model_type="qwen3",
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        rms_norm_eps=1e-06,
        rope_theta=1000000.0,
        attention_bias=False,
        sliding_window=None,
        max_window_layers=36,
        use_sliding_window=False,
        attention_dropout=0.0,
        hidden_act="silu",
        tie_word_embeddings=False,
    ),
    # mistralai/Mistral-7B-v0.3 config.json (v0.3: no sliding window, 32768-token vocabulary)
    "mistral-7b-v0.3": dict(
        model_type="mistral",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32768,
        max_position_embeddings=32768,
        rms_norm_eps=1e-05,
        rope_theta=1000000.0,
        sliding_window=None,
        attention_dropout=0.0,
        hidden_act="silu",
        tie_word_embeddings=False,
    ),
    # google/gemma-2-2b config.json (four norms a layer, soft-capped attention and logits, a sliding window on every
    # other layer, queries scaled by query_pre_attn_scalar**-0.5, embeddings tied and scaled by sqrt(hidden))
    "gemma-2-2b": dict(
        _GEMMA2,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
    ),
    # google/gemma-2-9b config.json
    "gemma-2-9b": dict(
        _GEMMA2,
        hidden_size=3584,
        intermediate_size=14336,
        num_hidden_layers=42,
        num_attention_heads=16,
        num_key_value_heads=8,
    ),
    # microsoft/Phi-3-mini-4k-instruct config.json (fused qkv_proj and gate_up_proj, no GQA)
    "phi-3-mini": dict(
        model_type="phi3",
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32064,
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        rms_norm_eps=1e-05,
        rope_theta=10000.0,
        rope_scaling=None,
        sliding_window=2047,
        attention_bias=False,
        attention_dropout=0.0,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        hidden_act="silu",
        tie_word_embeddings=False,
    ),
    # openai-community/gpt2 config.json (124M: LayerNorm, GELU MLP of 4 x n_embd, dropout 0.1, Conv1D projections,
    # learned positions, tied embeddings)
    "gpt2": dict(_GPT2, n_embd=768, n_layer=12, n_head=12),
    # openai-community/gpt2-xl config.json (1.5B)
    "gpt2-xl": dict(_GPT2, n_embd=1600, n_layer=48, n_head=25),
    # google-bert/bert-base-uncased config.json (an encoder: built with model.head, BertForSequenceClassification
    # by default; the file's architectures, BertForMaskedLM, is left out with it)
    "bert-base-uncased": dict(
        _BERT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
    ),
    # google-bert/bert-large-uncased config.json
    "bert-large-uncased": dict(
        _BERT, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16
    ),
}

_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512)

TINY_PRESETS: dict[str, dict] = {
    "tiny-llama": dict(model_type="llama", **_TINY, intermediate_size=176, rope_theta=10000.0),
    "tiny-qwen2": dict(model_type="qwen2", **_TINY, intermediate_size=160, tie_word_embeddings=True),
    "tiny-qwen3": dict(model_type="qwen3", **_TINY, intermediate_size=160, head_dim=32),
    "tiny-mistral": dict(model_type="mistral", **_TINY, intermediate_size=176, sliding_window=None),
    "tiny-gemma2": dict(
        model_type="gemma2",
        **_TINY,
        intermediate_size=128,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=16,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        hidden_activation="gelu_pytorch_tanh",
    ),
    # Phi3Config's default token ids (32000) lie outside a 512-token vocabulary: the embedding refuses them
    "tiny-phi3": dict(
        model_type="phi3",
        **{**_TINY, "num_key_value_heads": 4},
        intermediate_size=128,
        pad_token_id=None,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "tiny-gpt2": dict(
        model_type="gpt2",
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        vocab_size=512,
        activation_function="gelu_new",
        attn_pdrop=0.1,
        embd_pdrop=0.1,
        resid_pdrop=0.1,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "tiny-bert": dict(
        model_type="bert",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=256,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    ),
}

ALL_HF_PRESETS: dict[str, dict] = {**HF_PRESETS, **TINY_PRESETS}
