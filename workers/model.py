"""A decoder-only transformer whose parameters carry a leading *variant* axis.

One module trains a whole pack of same-shape variants at once: every weight is stacked on
axis 0 (``W_Q: [V, n_heads, d_model, d_head]``), every activation carries ``V`` first, and
a pack of one is the plain single-model case. Heads keep an explicit axis, as in
TransformerLens, so probes read per-head attention patterns through the named hook point
``blocks[l].attn.hook_pattern`` and switch heads off through ``head_mask`` without touching
``forward``.

Each variant is initialised from its own seed with its own generator, in a fixed order, so a
variant's starting weights do not depend on which pack it lands in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the field and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int
    n_heads: int
    d_model: int
    vocab_size: int
    n_ctx: int
    d_head: int | None = None  # default d_model // n_heads
    d_mlp: int | None = None  # default 4 * d_model; ignored when attn_only
    attn_only: bool = False
    layer_norm: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model", "vocab_size", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"model.d_model={self.d_model} is not divisible by model.n_heads="
                    f"{self.n_heads}; pick n_heads dividing d_model or set model.d_head"
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        elif not isinstance(self.d_head, int) or self.d_head < 1:
            raise ConfigError(f"model.d_head must be a positive integer, got {self.d_head!r}")
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        elif not isinstance(self.d_mlp, int) or self.d_mlp < 1:
            raise ConfigError(f"model.d_mlp must be a positive integer, got {self.d_mlp!r}")
        if not (isinstance(self.init_std, int | float) and self.init_std > 0):
            raise ConfigError(f"model.init_std must be a positive number, got {self.init_std!r}")

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ModelConfig:
        unknown = sorted(set(values) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"model: unknown field(s) {unknown}; valid fields: {_FIELDS}")
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def n_params(self) -> int:
        """Parameters of one variant."""
        d, h, e, m = self.d_model, self.n_heads, self.d_head, self.d_mlp
        assert e is not None and m is not None
        attn = 3 * h * d * e + 3 * h * e + h * e * d + d
        mlp = 0 if self.attn_only else d * m + m + m * d + d
        norms = (2 if self.attn_only else 4) * d if self.layer_norm else 0
        embed = self.vocab_size * d + self.n_ctx * d
        unembed = d * self.vocab_size + self.vocab_size + (2 * d if self.layer_norm else 0)
        return embed + self.n_layers * (attn + mlp + norms) + unembed

    def flops_per_token(self, seq_len: int) -> int:
        """Forward+backward FLOPs per token of one variant (6N + attention, Kaplan-style)."""
        d_attn = self.n_heads * (self.d_head or 0)
        dense = self.n_params() - self.vocab_size * self.d_model - self.n_ctx * self.d_model
        return 6 * dense + 6 * self.n_layers * seq_len * d_attn


_FIELDS = [f.name for f in fields(ModelConfig)]


class HookPoint(nn.Module):
    """Identity module: a named place where probes attach forward hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks)


class _Stacked(nn.Module):
    """Holds parameters with a leading variant axis and initialises them per variant."""

    def _param(self, *shape: int, v: int, fill: str = "normal", std: float = 0.0) -> nn.Parameter:
        p = nn.Parameter(torch.empty(v, *shape))
        p._headspec_init = (fill, std)  # type: ignore[attr-defined]
        return p


class Attention(_Stacked):
    def __init__(self, cfg: ModelConfig, v: int) -> None:
        super().__init__()
        d, h, e = cfg.d_model, cfg.n_heads, cfg.d_head
        assert e is not None
        std, out_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.W_Q = self._param(h, d, e, v=v, std=std)
        self.W_K = self._param(h, d, e, v=v, std=std)
        self.W_V = self._param(h, d, e, v=v, std=std)
        self.W_O = self._param(h, e, d, v=v, std=out_std)
        self.b_Q = self._param(h, e, v=v, fill="zeros")
        self.b_K = self._param(h, e, v=v, fill="zeros")
        self.b_V = self._param(h, e, v=v, fill="zeros")
        self.b_O = self._param(d, v=v, fill="zeros")
        self.hook_pattern = HookPoint()  # called with [V, B, H, Q, K]
        self.scale = 1.0 / math.sqrt(e)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor, want_pattern: bool) -> tuple:
        # x: [V, B, S, D]; head_mask: [V, H]
        q = torch.einsum("vbsd,vhde->vbhse", x, self.W_Q) + self.b_Q[:, None, :, None]  # [V,B,H,S,E]
        k = torch.einsum("vbsd,vhde->vbhse", x, self.W_K) + self.b_K[:, None, :, None]  # [V,B,H,S,E]
        val = torch.einsum("vbsd,vhde->vbhse", x, self.W_V) + self.b_V[:, None, :, None]  # [V,B,H,S,E]
        pattern = None
        if want_pattern or self.hook_pattern.active:
            seq = x.shape[2]
            scores = (q @ k.transpose(-1, -2)) * self.scale  # [V,B,H,Q,K]
            causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()  # [Q,K]
            scores = scores.masked_fill(~causal, float("-inf"))
            pattern = self.hook_pattern(scores.float().softmax(dim=-1))  # [V,B,H,Q,K]
            z = pattern.to(val.dtype) @ val  # [V,B,H,Q,E]
        else:
            v_, b_, h_, s_, e_ = q.shape  # SDPA's fused kernels take 4-D inputs
            z = F.scaled_dot_product_attention(
                q.reshape(v_ * b_, h_, s_, e_), k.reshape(v_ * b_, h_, s_, e_),
                val.reshape(v_ * b_, h_, s_, e_), is_causal=True,
            ).view(v_, b_, h_, s_, e_)  # [V,B,H,Q,E]
        z = z * head_mask[:, None, :, None, None].to(z.dtype)  # [V,B,H,Q,E]
        out = torch.einsum("vbhqe,vhed->vbqd", z, self.W_O) + self.b_O[:, None, None]  # [V,B,Q,D]
        return out, pattern


class LayerNorm(_Stacked):
    def __init__(self, d: int, v: int) -> None:
        super().__init__()
        self.w = self._param(d, v=v, fill="ones")
        self.b = self._param(d, v=v, fill="zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [V, B, S, D]
        x = F.layer_norm(x, x.shape[-1:])  # [V,B,S,D]
        return x * self.w[:, None, None] + self.b[:, None, None]  # [V,B,S,D]


class MLP(_Stacked):
    def __init__(self, cfg: ModelConfig, v: int) -> None:
        super().__init__()
        d, m = cfg.d_model, cfg.d_mlp
        assert m is not None
        self.W_in = self._param(d, m, v=v, std=cfg.init_std)
        self.b_in = self._param(m, v=v, fill="zeros")
        self.W_out = self._param(m, d, v=v, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))
        self.b_out = self._param(d, v=v, fill="zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [V, B, S, D]
        h = F.gelu(torch.einsum("vbsd,vdm->vbsm", x, self.W_in) + self.b_in[:, None, None])  # [V,B,S,M]
        return torch.einsum("vbsm,vmd->vbsd", h, self.W_out) + self.b_out[:, None, None]  # [V,B,S,D]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, v: int) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, v) if cfg.layer_norm else nn.Identity()
        self.attn = Attention(cfg, v)
        self.ln2: nn.Module | None = None
        self.mlp: MLP | None = None
        if not cfg.attn_only:
            self.ln2 = LayerNorm(cfg.d_model, v) if cfg.layer_norm else nn.Identity()
            self.mlp = MLP(cfg, v)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor, want_pattern: bool) -> tuple:
        attn_out, pattern = self.attn(self.ln1(x), head_mask, want_pattern)  # [V,B,S,D]
        x = x + attn_out  # [V,B,S,D]
        if self.mlp is not None and self.ln2 is not None:
            x = x + self.mlp(self.ln2(x))  # [V,B,S,D]
        return x, pattern


class PackedTransformer(_Stacked):
    """``n_variants`` same-shape transformers evaluated together."""

    def __init__(self, cfg: ModelConfig, seeds: list[int] | int = 1) -> None:
        super().__init__()
        seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        if not seed_list:
            raise ConfigError("a pack needs at least one variant seed")
        v = len(seed_list)
        self.cfg, self.n_variants, self.seeds = cfg, v, seed_list
        self.W_E = self._param(cfg.vocab_size, cfg.d_model, v=v, std=cfg.init_std)
        self.W_pos = self._param(cfg.n_ctx, cfg.d_model, v=v, std=cfg.init_std)
        self.blocks = nn.ModuleList(Block(cfg, v) for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, v) if cfg.layer_norm else nn.Identity()
        self.W_U = self._param(cfg.d_model, cfg.vocab_size, v=v, std=cfg.init_std)
        self.b_U = self._param(cfg.vocab_size, v=v, fill="zeros")
        self.register_buffer("head_mask", torch.ones(v, cfg.n_layers, cfg.n_heads))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for i, seed in enumerate(self.seeds):
            gen = torch.Generator().manual_seed(seed)
            for p in self.parameters():  # registration order is fixed, so init is too
                fill, std = p._headspec_init  # type: ignore[attr-defined]
                if fill == "normal":
                    values = torch.randn(p.shape[1:], generator=gen) * std
                else:
                    values = torch.ones(p.shape[1:]) if fill == "ones" else torch.zeros(p.shape[1:])
                p[i].copy_(values.to(p.device, p.dtype))

    def forward(
        self, tokens: torch.Tensor, head_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens [V, B, S] int64 -> logits [V, B, S, vocab]."""
        return self._run(tokens, head_mask, want_patterns=False)[0]

    def run_with_patterns(
        self, tokens: torch.Tensor, head_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [V, B, S, vocab] and attention patterns [V, B, L, H, Q, K] (float32)."""
        logits, patterns = self._run(tokens, head_mask, want_patterns=True)
        return logits, torch.stack(patterns, dim=2)  # [V,B,L,H,Q,K]

    def _run(self, tokens: torch.Tensor, head_mask: torch.Tensor | None, want_patterns: bool):
        v, _, seq = self._check_tokens(tokens)
        mask = self.head_mask if head_mask is None else head_mask  # [V,L,H]
        if mask.shape != self.head_mask.shape:
            raise ValueError(f"head_mask must be {tuple(self.head_mask.shape)}, got {tuple(mask.shape)}")
        idx = tokens.unsqueeze(-1).expand(*tokens.shape, self.cfg.d_model)  # [V,B,S,D]
        emb = self.W_E.unsqueeze(1).expand(v, tokens.shape[1], -1, -1)  # [V,B,vocab,D]
        x = torch.gather(emb, 2, idx) + self.W_pos[:, None, :seq]  # [V,B,S,D]
        patterns = []
        for layer, block in enumerate(self.blocks):
            x, pattern = block(x, mask[:, layer], want_patterns)  # [V,B,S,D]
            if want_patterns:
                patterns.append(pattern)
        x = self.ln_final(x)  # [V,B,S,D]
        logits = torch.einsum("vbsd,vdn->vbsn", x, self.W_U) + self.b_U[:, None, None]  # [V,B,S,N]
        return logits, patterns

    def _check_tokens(self, tokens: torch.Tensor) -> tuple[int, int, int]:
        if tokens.dim() != 3 or tokens.shape[0] != self.n_variants:
            raise ValueError(
                f"tokens must be [n_variants={self.n_variants}, batch, seq], got {tuple(tokens.shape)}"
            )
        if tokens.shape[2] > self.cfg.n_ctx:
            raise ValueError(f"sequence length {tokens.shape[2]} exceeds model.n_ctx={self.cfg.n_ctx}")
        return tokens.shape[0], tokens.shape[1], tokens.shape[2]


def _as_pack(x: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Broadcast a per-batch tensor [B, S] to the pack's [V, B, S]."""
    if x is None or x.dim() == like.dim():
        return x
    return x.unsqueeze(0).expand(like.shape[0], *x.shape)


def token_losses(
    logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy per position: [V, B, S-1]; position i predicts token i+1.

    ``loss_mask`` [V or -, B, S] marks which *target* tokens count (index i = token i);
    positions whose target is masked out are 0.
    """
    tokens = _as_pack(tokens, logits[..., 0])  # [V,B,S]
    targets = tokens[..., 1:]  # [V,B,S-1]
    logp = logits[..., :-1, :].float().log_softmax(-1)  # [V,B,S-1,N]
    losses = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [V,B,S-1]
    mask = _as_pack(loss_mask, logits[..., 0])
    if mask is not None:
        losses = losses * mask[..., 1:].to(losses.dtype)  # [V,B,S-1]
    return losses


def mean_loss(
    logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token loss per variant: [V]."""
    losses = token_losses(logits, tokens, loss_mask)  # [V,B,S-1]
    mask = _as_pack(loss_mask, logits[..., 0])
    if mask is None:
        return losses.mean(dim=(1, 2))  # [V]
    count = mask[..., 1:].sum(dim=(1, 2)).clamp(min=1)  # [V]
    return losses.sum(dim=(1, 2)) / count  # [V]
