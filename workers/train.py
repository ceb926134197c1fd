"""Training of one pack: a plain function of its configuration, with no Ray in sight.

A pack is a group of same-shape variants trained together in one process, parameters
stacked on a leading variant axis (see ``workers.model``). Each variant keeps its own
initialisation seed, data stream and learning rate. Every ``probe_every`` steps (and at the
last step) the pack is probed on the fixed probe batch of its data configuration, and the
caller's sink receives the per-head scores; every step it receives the per-variant losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import torch

from workers.model import ConfigError, ModelConfig, PackedTransformer, mean_loss
from workers.optim import PackedAdamW


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    probe_every: int = 100
    probe_batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "probe_every", "probe_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not (isinstance(self.lr, int | float) and 0 < self.lr < 1):
            raise ConfigError(f"train.lr must be a number in (0, 1), got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be positive or null, got {self.grad_clip!r}")

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> TrainConfig:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"train: unknown field(s) {unknown}; valid fields: {names}")
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def lr_scale(self, step: int) -> float:
        """Linear warmup, then cosine decay to 10% of the peak."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def probe_steps(self) -> list[int]:
        """Steps (counted as updates done) at which the pack is probed: 0, every N, and the last."""
        steps = list(range(0, self.steps, self.probe_every))
        return steps + [self.steps] if steps[-1] != self.steps else steps


@dataclass(frozen=True)
class VariantRun:
    """What differs between the variants of one pack."""

    seed: int  # model initialisation
    data_seed: int  # training data stream
    lr: float


class PackSink(Protocol):
    def on_step(self, step: int, losses: torch.Tensor) -> None: ...  # losses [V]

    def on_probe(self, step: int, probe: ProbeResult) -> None: ...


@dataclass(frozen=True)
class ProbeResult:
    head: dict[str, torch.Tensor]  # metric -> [V, L, H]
    scalar: dict[str, torch.Tensor]  # metric -> [V]


# (model, probe tokens and ground truth, step) -> result; supplied by workers.probes
Prober = Callable[[PackedTransformer, int], ProbeResult]
# (variant index, batch size) -> (tokens [B, S], loss_mask [B, S] or None)
BatchSource = Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class PackState:
    """What a checkpoint holds: enough to continue a pack exactly where it stopped."""

    step: int
    model: dict
    optimizer: dict
    data_rng: list


def device_autocast(device: torch.device) -> torch.autocast:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def train_pack(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    variants: list[VariantRun],
    next_batch: BatchSource,
    prober: Prober,
    sink: PackSink,
    *,
    device: str | torch.device = "cpu",
    resume: PackState | None = None,
    on_checkpoint: Callable[[PackState], None] | None = None,
    checkpoint_every: int | None = None,
    data_rng_state: Callable[[], list] | None = None,
    compile_model: bool = False,
) -> PackedTransformer:
    """Train every variant of the pack for ``train_cfg.steps`` updates.

    ``compile_model`` runs the training forward through ``torch.compile`` (worth it on a
    GPU, where a small pack is launch-bound); probes always use the plain module, whose hook
    points the compiled graph does not fire.

    ``next_batch(v, batch_size)`` yields variant v's next training tokens. ``resume`` continues
    from a checkpoint (probes already delivered are not repeated); ``on_checkpoint`` receives
    the state every ``checkpoint_every`` steps.
    """
    device = torch.device(device)
    model = PackedTransformer(model_cfg, [v.seed for v in variants]).to(device)
    lrs = torch.tensor([v.lr for v in variants], device=device)
    opt = PackedAdamW(
        list(model.parameters()),
        lrs,
        weight_decay=train_cfg.weight_decay,
        grad_clip=train_cfg.grad_clip,
    )
    start = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        start = resume.step
    probe_at = set(train_cfg.probe_steps())
    autocast = device_autocast(device)
    forward = torch.compile(model) if compile_model else model

    def probe(step: int) -> None:
        model.eval()
        with autocast:
            result = prober(model, step)
        model.train()
        sink.on_probe(step, result)

    if start == 0:
        probe(0)
    for step in range(start, train_cfg.steps):
        tokens, mask = _stack_batches(next_batch, len(variants), train_cfg.batch_size, device)
        with autocast:
            logits = forward(tokens)  # [V,B,S,N]
            losses = mean_loss(logits, tokens, mask)  # [V]
        opt.zero_grad()
        losses.sum().backward()
        opt.step(train_cfg.lr_scale(step))
        done = step + 1
        sink.on_step(done, losses.detach())
        if done in probe_at:
            probe(done)
        if on_checkpoint and checkpoint_every and (done % checkpoint_every == 0) and done < train_cfg.steps:
            on_checkpoint(
                PackState(
                    step=done,
                    model={k: t.detach().cpu() for k, t in model.state_dict().items()},
                    optimizer=opt.state_dict(),
                    data_rng=data_rng_state() if data_rng_state else [],
                )
            )
    return model


def _stack_batches(
    next_batch: BatchSource, n_variants: int, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    parts = [next_batch(v, batch_size) for v in range(n_variants)]
    tokens = torch.stack([t for t, _ in parts]).to(device, non_blocking=True)  # [V,B,S]
    if all(m is None for _, m in parts):
        return tokens, None
    masks = [m if m is not None else torch.ones_like(t, dtype=torch.bool) for t, m in parts]
    return tokens, torch.stack(masks).to(device, non_blocking=True)  # [V,B,S]


# -- device memory --------------------------------------------------------------------------

FLOAT_BYTES = 4  # parameters, optimizer state and (worst case, no autocast) activations in fp32


def estimate_variant_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig, seq_len: int) -> int:
    """Peak device memory one variant of a pack needs, in bytes (a deliberate overestimate).

    * state: parameters, gradients and AdamW's two moments, 4 x fp32 per parameter;
    * training activations kept for backward, per layer: residual stream and its norm,
      q/k/v and the heads' outputs, the MLP hidden layer (pre and post activation) and the
      attention scores and pattern ``[B, H, S, S]``; then the logits with their log-softmax
      and gradient ``[B, S, vocab]``, and the gradient of the embedding gathered over a
      batch-expanded ``W_E`` ``[B, vocab, d_model]``;
    * probing: the same activations for the probe batch, plus every layer's patterns kept
      for the metrics ``[B, L, H, S, S]``, twice (the importance backward).

    Training and probing never overlap, so the peak is the state plus the larger of the two.
    """
    b, s = train_cfg.batch_size, seq_len
    d, h, n = model_cfg.d_model, model_cfg.n_heads, model_cfg.vocab_size
    e, m = model_cfg.d_head or 0, model_cfg.d_mlp or 0

    def activations(batch: int) -> int:
        per_layer = batch * s * (2 * d + 4 * h * e + (0 if model_cfg.attn_only else 2 * m))
        per_layer += 2 * batch * h * s * s  # scores and pattern
        logits = 3 * batch * s * n  # logits, log-softmax, their gradient
        return model_cfg.n_layers * per_layer + 2 * batch * s * d + logits + batch * n * d

    state = 4 * model_cfg.n_params()
    probe_b = train_cfg.probe_batch_size
    probe = 2 * (activations(probe_b) + probe_b * model_cfg.n_layers * h * s * s)
    return FLOAT_BYTES * (state + max(activations(b), probe))


def variant_chunks(n_variants: int, per_variant_bytes: int, budget_bytes: int | None) -> list[range]:
    """Split a pack's variant positions into chunks that fit ``budget_bytes`` (trained one
    after another). No budget (CPU) or a pack that fits: one chunk; never below one variant."""
    if n_variants < 1:
        raise ValueError(f"a pack needs at least one variant, got {n_variants}")
    size = n_variants
    if budget_bytes is not None and per_variant_bytes > 0:
        size = max(1, min(n_variants, budget_bytes // per_variant_bytes))
    return [range(i, min(i + size, n_variants)) for i in range(0, n_variants, size)]
