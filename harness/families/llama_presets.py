"""Llama shape presets: the published configurations (config.json of each release), weights not included.

To add a preset, add an entry with every key below; `bench run model=llama model.preset=NAME` then accepts it.
"""

LLAMA_PRESETS: dict[str, dict] = {
    # Small enough for CPU tests and the smoke suite; GQA kept (4 query heads, 2 kv heads).
    "tiny": dict(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=176,
        vocab_size=512,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        max_position_embeddings=2048,
    ),
    # meta-llama/Llama-3.2-1B config.json
    "llama-3.2-1b": dict(
        hidden_size=2048,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
    ),
    # meta-llama/Llama-3.1-8B config.json
    "llama-3.1-8b": dict(
        hidden_size=4096,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        max_position_embeddings=131072,
    ),
    # meta-llama/Llama-2-7b-hf config.json (the seeds' "7B model")
    "llama-2-7b": dict(
        hidden_size=4096,
        num_layers=32,
        num_heads=32,
        num_kv_heads=32,
        intermediate_size=11008,
        vocab_size=32000,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        max_position_embeddings=4096,
    ),
    # meta-llama/Llama-3.1-405B config.json: for the analytic model (the seeds' "LoRA on 405B" claim); far too
    # large to build on one device.
    "llama-3.1-405b": dict(
        hidden_size=16384,
        num_layers=126,
        num_heads=128,
        num_kv_heads=8,
        intermediate_size=53248,
        vocab_size=128256,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        max_position_embeddings=131072,
    ),
}
