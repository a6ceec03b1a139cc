"""Co-LoRA's layers: :class:`CoLoRALinear` (gated global and local P/Q branches in frozen
A/B frames, the same shapes at every width) and :class:`DualLoRALinear` (plain dual LoRA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CoLoRALinear", "DualLoRALinear", "Gate"]


def _zero_param(*shape) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


class Gate(nn.Module):
    """``g(x) = sigmoid(x . w)``; in training the logit gets noise of std
    ``softplus(x . w_noise) + 1e-5`` (noisy gating). Zero weights: ``g = 0.5`` in eval mode.
    The logit is clamped to [-10, 10], so g lies strictly inside (0, 1)."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.weight = _zero_param(d_in)
        self.noise = _zero_param(d_in)
        self.forced: float | None = None  # see forced_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forced is not None:
            return torch.full((len(x), 1), self.forced, dtype=x.dtype)
        logit = x @ self.weight  # (B,)
        if self.training:
            logit = logit + torch.randn_like(logit) * (F.softplus(x @ self.noise) + 1e-5)
        # clamped so that float32 never rounds g to exactly 0 or 1 (a branch would get no
        # gradient at all): g stays within [4.5e-5, 1 - 4.5e-5]
        return torch.sigmoid(logit.clamp(-10.0, 10.0))[:, None]  # (B, 1)


class CoLoRALinear(nn.Module):
    """A frozen linear layer with Co-LoRA's gated global (1) and local (2) P/Q branches.

    ``A (r, d_in)`` and ``B (d_out, r)`` are frozen buffers (never sent); ``p_global``,
    ``q_global`` are what the server sent (frozen locally); ``p_local``, ``q_local`` and the
    gate train. All P/Q start at zero, so the layer starts as ``base``. The fixed gains
    ``gain_in``, ``gain_out`` (1 by default) put a larger model's codes on the anchor's scale
    (:func:`align_frames`).
    """

    def __init__(
        self,
        base: nn.Linear,
        a: torch.Tensor,
        b: torch.Tensor,
        scale: float,
        gain_in: float = 1.0,
        gain_out: float = 1.0,
    ) -> None:
        super().__init__()
        r = a.shape[0]
        if a.shape != (r, base.in_features) or b.shape != (base.out_features, r):
            raise ValueError(
                f"A {tuple(a.shape)} and B {tuple(b.shape)} do not fit a layer "
                f"{base.in_features} -> {base.out_features}"
            )
        self.base = base.requires_grad_(False)
        self.register_buffer("a", a.clone())
        self.register_buffer("b", b.clone())
        self.scale, self.gain_in, self.gain_out = float(scale), float(gain_in), float(gain_out)
        self.p_global = nn.Parameter(torch.zeros(r, r), requires_grad=False)
        self.q_global = nn.Parameter(torch.zeros(1, r), requires_grad=False)
        self.p_local, self.q_local = _zero_param(r, r), _zero_param(1, r)
        self.gate = Gate(base.in_features)

    def branch(self, x: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``s * B((A x) P + Q)`` (with the gains) for a batch ``x (B, d_in)`` -> ``(B, d_out)``."""
        codes = self.gain_in * (x @ self.a.T)
        return (self.scale * self.gain_out) * (codes @ p + q) @ self.b.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        mixed = g * self.branch(x, self.p_global, self.q_global)
        return self.base(x) + mixed + (1 - g) * self.branch(x, self.p_local, self.q_local)


class DualLoRALinear(nn.Module):
    """A frozen linear layer with a gated global and local plain LoRA branch
    (``s * B A x``); ``a_local`` random, ``b_local`` zero: a no-op at the start."""

    def __init__(self, base: nn.Linear, rank: int, scale: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = float(scale)
        a = torch.empty(rank, base.in_features)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.a_global = nn.Parameter(a.clone(), requires_grad=False)
        self.b_global = nn.Parameter(torch.zeros(base.out_features, rank), requires_grad=False)
        self.a_local = nn.Parameter(a)
        self.b_local = _zero_param(base.out_features, rank)
        self.gate = Gate(base.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        first = (x @ self.a_global.T) @ self.b_global.T
        second = (x @ self.a_local.T) @ self.b_local.T
        return self.base(x) + self.scale * (g * first + (1 - g) * second)
