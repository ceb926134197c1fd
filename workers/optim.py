"""AdamW for a pack: every variant has its own learning rate and its own gradient clipping.

Parameters carry a leading variant axis, so a per-variant learning rate is a ``[V]`` tensor
broadcast over each parameter. Variants never see each other's gradients: Adam's moments are
elementwise, and clipping uses each variant's own global gradient norm.
"""

from __future__ import annotations

import torch
from torch import nn


class PackedAdamW:
    def __init__(
        self,
        params: list[nn.Parameter],
        lrs: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_clip: float | None = 1.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.base_lrs = lrs.detach().float()  # [V]
        self.betas, self.eps, self.weight_decay, self.grad_clip = betas, eps, weight_decay, grad_clip
        self.step_count = 0
        # decay weight matrices (normal-initialised), never biases or norm gains
        self.decay = [getattr(p, "_headspec_init", ("",))[0] == "normal" for p in self.params]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def grad_norms(self) -> torch.Tensor:
        """Global gradient norm of each variant: [V]."""
        total = torch.zeros_like(self.base_lrs, device=self.params[0].device)  # [V]
        for p in self.params:
            if p.grad is not None:
                total += p.grad.float().pow(2).flatten(1).sum(1)  # [V]
        return total.sqrt()

    @torch.no_grad()
    def step(self, lr_scale: float = 1.0) -> torch.Tensor:
        """One update; returns the per-variant gradient norms before clipping [V]."""
        self.step_count += 1
        beta1, beta2 = self.betas
        norms = self.grad_norms()  # [V]
        clip = torch.ones_like(norms)  # [V]
        if self.grad_clip is not None:
            clip = (self.grad_clip / (norms + 1e-6)).clamp(max=1.0)  # [V]
        bias1 = 1 - beta1**self.step_count
        bias2 = 1 - beta2**self.step_count
        lrs = self.base_lrs.to(norms.device) * lr_scale  # [V]
        for p, m, s, decay in zip(self.params, self.exp_avg, self.exp_avg_sq, self.decay, strict=True):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            g = p.grad * clip.view(shape).to(p.grad.dtype)  # [V,...]
            m.lerp_(g, 1 - beta1)
            s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            lr = lrs.view(shape).to(p.dtype)  # [V,1,...]
            if self.weight_decay and decay:
                p.mul_(1 - lr * self.weight_decay)
            p.sub_(lr / bias1 * m / ((s / bias2).sqrt() + self.eps))
        return norms

    def state_dict(self) -> dict:
        return {
            "step_count": self.step_count,
            "exp_avg": [t.cpu() for t in self.exp_avg],
            "exp_avg_sq": [t.cpu() for t in self.exp_avg_sq],
            "base_lrs": self.base_lrs.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        saved = state["exp_avg"] + state["exp_avg_sq"]
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, saved, strict=True):
            dst.copy_(src)
        self.base_lrs = state["base_lrs"].to(self.base_lrs.device)
