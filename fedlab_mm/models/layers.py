"""The building blocks of :class:`~fedlab_mm.models.MultimodalNet`: one encoder per kind of
input, three fusions, and a residual block.

No BatchNorm anywhere: batch statistics would leak missing inputs and differ between
clients."""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AttentionFusion",
    "ConcatFusion",
    "ImageEncoder",
    "MeanFusion",
    "MLPEncoder",
    "ResidualMLP",
    "SpectrogramEncoder",
]


class MLPEncoder(nn.Module):
    """Vector ``(B, in_dim)`` -> ``(B, d)``: Linear -> ReLU -> Linear."""

    def __init__(self, in_dim: int, d: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class ImageEncoder(nn.Module):
    """Image ``(B, C, H, W)`` -> ``(B, d)``: two stride-2 convolutions, then a linear map."""

    def __init__(self, shape: tuple[int, int, int], d: int, channels: int = 16) -> None:
        super().__init__()
        c, h, w = shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        out_h, out_w = (h + 3) // 4, (w + 3) // 4
        self.proj = nn.Linear(2 * channels * out_h * out_w, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).flatten(1))


class SpectrogramEncoder(nn.Module):
    """Log-mel ``(B, mels, frames)`` -> ``(B, d)``: 1-D convolutions over time (mel bands as
    channels), mean over time, then a linear map. Shift in time barely changes the output."""

    def __init__(self, shape: tuple[int, int], d: int, channels: int = 32) -> None:
        super().__init__()
        mels, _frames = shape
        self.conv = nn.Sequential(
            nn.Conv1d(mels, channels, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, 2 * channels, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.proj = nn.Linear(2 * channels, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).mean(-1))


class ConcatFusion(nn.Module):
    """Concatenate the (masked) modality features and mix them: ``(B, M*w) -> (B, d)``.

    ``forward(parts, present)`` takes, per modality, a list of feature tensors (the encoder
    output, or its aligned and context parts).
    """

    def __init__(self, names: list[str], width: int, d: int, hidden: int) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = d
        self.net = nn.Sequential(
            nn.Linear(len(names) * width, hidden), nn.ReLU(), nn.Linear(hidden, d)
        )

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        masked = [
            torch.cat(parts[m], dim=1) * present[:, j : j + 1] for j, m in enumerate(self.names)
        ]
        return self.net(torch.cat(masked, dim=1))


class AttentionFusion(nn.Module):
    """FedEPA-style self-attention fusion over per-modality tokens.

    Tokens ``[a_1, c_1, ..., a_M, c_M]`` (B, 2M, k) plus a learned type embedding per slot go
    through multi-head self-attention with a residual connection and LayerNorm; the joint
    embedding is the mean over the present tokens. A missing modality's tokens are masked out
    as keys and left out of the mean, so they cannot change the output. A sample with no
    modality at all is refused with a ``ValueError`` naming its position (multi-head attention
    with every key masked would give NaN).
    ``last_attention`` keeps the latest attention map (B, 2M, 2M), rows summing to 1.
    """

    def __init__(
        self, names: list[str], k: int, heads: int = 4, type_embeddings: bool = True
    ) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = k
        tokens = 2 * len(self.names)
        self.types = nn.Parameter(0.02 * torch.randn(tokens, k)) if type_embeddings else None
        self.attn = nn.MultiheadAttention(k, heads, batch_first=True)
        self.norm = nn.LayerNorm(k)
        self.last_attention: torch.Tensor | None = None

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([t for m in self.names for t in parts[m]], dim=1)  # (B, 2M, k)
        if self.types is not None:
            tokens = tokens + self.types
        none = (present == 0).all(dim=1)
        if none.any():  # every key masked: attention has nothing to attend to (NaN logits)
            rows = none.nonzero().flatten().tolist()
            raise ValueError(
                f"samples at positions {rows[:10]}{' ...' if len(rows) > 10 else ''} have no "
                "modality present; attention fusion needs at least one per sample (drop those "
                "samples, or complete a modality first: fm.completion)"
            )
        ignore = present.repeat_interleave(2, dim=1) == 0  # (B, 2M), True = missing
        out, weights = self.attn(tokens, tokens, tokens, key_padding_mask=ignore, need_weights=True)
        out = self.norm(tokens + out)
        keep = (~ignore).float().unsqueeze(-1)  # (B, 2M, 1)
        self.last_attention = weights.detach()
        return (out * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, k)


class MeanFusion(nn.Module):
    """:class:`AttentionFusion` without the attention: the mean of the LayerNorm-ed tokens.

    Tokens ``[a_1, c_1, ..., a_M, c_M]`` (B, 2M, k) plus a learned type embedding per slot go
    through LayerNorm, and the joint embedding is their mean over the present tokens. It keeps
    everything of the attention fusion except the attention layer (and its residual), so that
    swapping one for the other measures what the attention adds. A missing modality's tokens
    are left out of the mean; a sample with no modality at all gets the zero vector, as
    :class:`ConcatFusion` gives it zero inputs.
    """

    def __init__(self, names: list[str], k: int, type_embeddings: bool = True) -> None:
        super().__init__()
        self.names = list(names)
        self.out_dim = k
        tokens = 2 * len(self.names)
        self.types = nn.Parameter(0.02 * torch.randn(tokens, k)) if type_embeddings else None
        self.norm = nn.LayerNorm(k)

    def forward(self, parts: dict[str, list[torch.Tensor]], present: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([t for m in self.names for t in parts[m]], dim=1)  # (B, 2M, k)
        if self.types is not None:
            tokens = tokens + self.types
        keep = present.repeat_interleave(2, dim=1).unsqueeze(-1)  # (B, 2M, 1), 1 = present
        out = self.norm(tokens)
        return (out * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, k)


class ResidualMLP(nn.Module):
    """FedMVP's block before the classifier: ``x + proj2(dropout(relu(proj1(x))))``, both
    layers ``(width, width)``."""

    def __init__(self, width: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj1 = nn.Linear(width, width)
        self.proj2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj2(self.dropout(torch.relu(self.proj1(x))))
