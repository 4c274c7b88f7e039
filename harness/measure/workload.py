"""The matched workload: one synthetic batch and the four phases that differ only in what they compute.

- fwd_infer: eval-mode forward under torch.inference_mode, logits only (what serving costs);
- fwd_train: train-mode forward with grad enabled, loss included (the denominator of "backward ~ 2x forward");
- fwd_bwd:   forward + loss.backward();
- step:      forward + backward + optimizer.step() + zero_grad().
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from harness import families
from harness.config.groups import BenchConfig
from harness.config.rules import PHASES
from harness.families.hf_config import CAUSAL_LM, SEQUENCE_CLASSIFICATION
from harness.measure.methods import AUTOCAST_DTYPE, Trainable
from harness.measure.sharding import forward_only, is_fsdp


def token_inputs(
    model_config: Any, head: str, gen: torch.Generator, shape: tuple[int, int], device: torch.device
) -> tuple[dict, dict]:
    """A transformers model's inputs (random token ids; `model_config`: its transformers config) and its training
    inputs (with the labels its head's loss reads: the token ids themselves for a causal LM, which shifts them, and
    for a masked LM, which predicts every position; one class id per sequence for sequence classification, drawn
    after the ids)."""
    ids = torch.randint(0, model_config.vocab_size, shape, generator=gen).to(device)
    if head == CAUSAL_LM:
        # use_cache=False: a matched forward computes logits (and the loss), not a KV cache for generation that
        # would keep every layer's keys and values alive in fwd_infer
        inputs = {"input_ids": ids, "use_cache": False}
        return inputs, {**inputs, "labels": ids}
    # an encoder keeps no cache; no attention mask: every token is real (no padding), as in the HF doc's setup
    inputs = {"input_ids": ids}
    if head == SEQUENCE_CLASSIFICATION:
        labels = torch.randint(0, model_config.num_labels, shape[:1], generator=gen).to(device)
        return inputs, {**inputs, "labels": labels}
    return inputs, {**inputs, "labels": ids}


class Workload:
    def __init__(self, cfg: BenchConfig, trainable: Trainable, device: torch.device):
        self.cfg = cfg
        self.model = trainable.model
        self.base = trainable.base if trainable.base is not None else trainable.model
        self._forward_only = forward_only(self.model)
        # FSDP2 reuses its all-gather buffers: gathered under inference_mode they would become inference tensors
        # that the next training forward cannot use. no_grad saves nothing for backward either.
        self._inference = torch.no_grad if is_fsdp(self.model) else torch.inference_mode
        trainable.resolved["fwd_infer_context"] = self._inference.__name__
        self.optimizer = trainable.optimizer
        self.device = device
        batch, seq = cfg.workload.batch_size, cfg.workload.seq_len
        gen = torch.Generator(device="cpu").manual_seed(cfg.workload.seed)
        if families.of(cfg.model).transformers:
            head = trainable.resolved.get("head", CAUSAL_LM)
            self.inputs, self.train_kwargs = token_inputs(self.base.config, head, gen, (batch, seq), device)
        else:
            width = cfg.model.width
            dtype = next(p for p in self.model.parameters() if p.is_floating_point()).dtype
            x = torch.randn(batch, seq, width, generator=gen).to(device, dtype)
            target = torch.randn(batch, seq, width, generator=gen).to(device)
            self.inputs = {"x": x}
            self.train_kwargs = {"x": x, "target": target}
        self.samples = batch
        self.tokens = batch * seq
        amp = AUTOCAST_DTYPE.get(cfg.precision.name)
        if amp is not None and is_fsdp(self.model):
            amp = None  # FSDP2's MixedPrecisionPolicy casts parameters and inputs instead (sharding.wrap)
        self._autocast: Callable[[], Any] = (
            (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext
        )
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision.name == "amp_fp16" else None
        self.set_to_none = cfg.workload.zero_grad == "set_to_none"  # zeros: gradients live through every forward

    def forward_loss(self) -> torch.Tensor:
        """Train-mode forward, loss included; the returned loss keeps the graph (and its saved tensors) alive."""
        if not self.model.training:  # a mode switch walks every module: only when it changes
            self.model.train()
        with self._autocast():
            out = self.model(**self.train_kwargs)
        return out.loss if hasattr(out, "loss") else out

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=self.set_to_none)

    def fwd_infer(self) -> None:
        if self.model.training:
            self.model.eval()
        with self._inference(), self._autocast():
            self.model(**self.inputs)

    def forward_only_loss(self) -> torch.Tensor:
        """forward_loss for a forward that no backward follows (fwd_train): a DDP model must not wait for a
        gradient reduction after it (harness/measure/sharding.py)."""
        with self._forward_only():
            return self.forward_loss()

    def fwd_train(self) -> None:
        self.forward_only_loss()

    def fwd_bwd(self) -> None:
        self.backward(self.forward_loss())

    def step(self) -> None:
        self.backward(self.forward_loss())
        self.optimizer_step()

    def release_graph(self, loss: torch.Tensor) -> None:
        """Free the graph of a training forward whose backward was not run, after a module tracker watched it.
        torch's module trackers (MemTracker, FlopCounterMode) hook the forward's tensors for backward; with no
        backward those hooks and autograd's C++ nodes hold each other in a cycle the garbage collector cannot
        break, so the graph, with every tensor saved for backward, would outlive the phase and sit in the next
        phases' figures. A backward runs the hooks and frees it; its gradients are dropped."""
        loss.backward()
        self.reset_grads()

    def reset_grads(self) -> None:
        """Untimed, after fwd_bwd: every fwd_bwd starts with the gradients a step leaves (none, or zeros)."""
        self.optimizer.zero_grad(set_to_none=self.set_to_none)

    def run(self, phase: str, instrumented: bool = False) -> None:
        """One repetition of `phase`; `instrumented` for the memory and FLOP passes (see below)."""
        with self._input_grad_hooks_lifted() if instrumented and phase == "fwd_infer" else contextlib.nullcontext():
            getattr(self, phase)()
        if phase == "fwd_bwd":
            self.reset_grads()

    @contextlib.contextmanager
    def _input_grad_hooks_lifted(self):
        """transformers and peft hook the input embeddings to mark their output as requiring grad (for
        checkpointing and adapters), even under inference_mode; torch's module trackers (MemTracker,
        FlopCounterMode) then fail on that tensor. fwd_infer computes no gradient, so the hooks change
        nothing it allocates: lift them while an instrumented pass runs, then put them back."""
        get = getattr(self.base, "get_input_embeddings", None)
        embeddings = get() if get else None
        if embeddings is None or not embeddings._forward_hooks:
            yield
            return
        saved = dict(embeddings._forward_hooks)
        embeddings._forward_hooks.clear()
        try:
            yield
        finally:
            embeddings._forward_hooks.update(saved)

    def warm_up(self, steps: int, repeats: int) -> None:
        """Full steps first (optimizer state exists from the first step on), then untimed repeats of each phase."""
        for _ in range(steps):
            self.step()
        for _ in range(repeats):
            for phase in PHASES:
                self.run(phase)
