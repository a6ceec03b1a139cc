"""The frozen A/B frames of the Co-LoRA blocks, aligned across sizes (simplified [R]).

The smallest model's frames are the top-``r`` singular directions of its frozen block
weights; a larger model takes its own top directions, rotated (orthogonal Procrustes) so that
its codes on the public digits match the smallest model's (:func:`align_frames`)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import nn

from .. import pretrained
from ..data import public_digits
from .base import SIZE_DIMS, forward_base, loaded_base

if TYPE_CHECKING:
    from .model import HeteroSpec

__all__ = [
    "FRAME_KEYS",
    "align_frames",
    "block_frames",
    "check_align",
    "fitted_frames",
    "frame_agreement",
]


def _smallest(spec: HeteroSpec) -> HeteroSpec:
    """The smallest size of the family (``SIZES["small"]``, of ``spec``'s family), the frames'
    anchor."""
    return type(spec)(*SIZE_DIMS["small"], family=getattr(spec, "family", "independent"))


@torch.no_grad()
def _block_activations(spec: HeteroSpec, x: torch.Tensor | None = None):
    """(inputs, outputs) of each block layer, centred, on tower features ``x`` (default: the
    public digits')."""
    layers, head = loaded_base(spec)
    record: list = []
    if x is None:
        x = pretrained.image_features(public_digits().modalities["image"])
    forward_base(layers, x.float(), record, head)
    return [(x - x.mean(0), y - y.mean(0)) for x, y in (record[i] for i in spec.blocks)]


def _block_weights(spec: HeteroSpec) -> list[torch.Tensor]:
    layers, head = loaded_base(spec)
    return [[*layers, head][i].weight.detach() for i in spec.blocks]


def _rotation(codes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``R (r, r)`` that best maps ``codes`` onto ``target`` (both ``(n, r)``):
    orthogonal Procrustes, ``U V^T`` of the SVD of ``codes^T target``."""
    u, _, vt = torch.linalg.svd(codes.double().T @ target.double())
    return (u @ vt).float()


@lru_cache(maxsize=16)
def align_frames(spec: HeteroSpec, anchor: HeteroSpec | None = None) -> list[dict]:
    """Frozen frames of each block layer of ``spec``, aligned with ``anchor``'s (default: the
    smallest size, at the same rank) on the public digits.

    Returns one dict per block: ``a (r, d_in)`` with orthonormal rows, ``b (d_out, r)`` with
    orthonormal columns, and scalar gains ``gain_in``/``gain_out`` (1 for the anchor).

    The anchor's frames are the top-``r`` singular directions of its frozen weight (what the
    layer reads most, what it writes most). Another size takes its own layer's top directions,
    rotated (orthogonal Procrustes) so that its codes on the public digits match the anchor's,
    and a gain that gives its codes the anchor's spread. A space that every size shares (the
    first block's input, the tower features; the head's output, the logits) keeps the
    anchor's frame as it is.
    """
    anchor = (anchor or _smallest(spec)).replace(rank=spec.rank)
    r = spec.rank
    ref, own = _block_activations(anchor), _block_activations(spec)
    ref_w, own_w = _block_weights(anchor), _block_weights(spec)
    frames = []
    for k in range(len(spec.blocks)):
        (xa, ya), (xs, ys) = ref[k], own[k]
        u_ref, _, vt_ref = torch.linalg.svd(ref_w[k].double(), full_matrices=False)
        u_own, _, vt_own = torch.linalg.svd(own_w[k].double(), full_matrices=False)
        a, b = vt_ref[:r].float(), u_ref[:, :r].float()
        frame = {"a": a, "b": b, "gain_in": 1.0, "gain_out": 1.0}
        if k > 0:  # not the tower's features: read in the layer's own top directions
            top = vt_own[:r].float()
            a = _rotation(xs @ top.T, xa @ frame["a"].T).T @ top
            frame.update(a=a, gain_in=float((xa @ frame["a"].T).std() / (xs @ a.T).std()))
        if k < len(spec.blocks) - 1:  # not the logits: write in the layer's own directions
            top = u_own[:, :r].float()
            b = top @ _rotation(ys @ top, ya @ frame["b"])
        frame.update(b=b, gain_out=float((ys @ b).std() / (ya @ frame["b"]).std()))
        frames.append(frame)
    return frames


def _orthonormal_rows(a: torch.Tensor) -> torch.Tensor:
    """The row-orthonormal matrix nearest to ``a`` (``U V^T`` of its SVD)."""
    u, _, vt = torch.linalg.svd(a.double(), full_matrices=False)
    return (u @ vt).float()


@lru_cache(maxsize=16)
def fitted_frames(spec: HeteroSpec, steps: int = 300, orthogonality: float = 0.5,
                  ridge: float = 1e-4) -> list[dict]:  # fmt: skip
    """The frames fitted the way FedMosaic's released code aligns a larger model to the
    anchor (reconstructed [R]; an ``align=`` for :class:`HeteroNet` and :func:`pq_transfer`).

    The anchor (the smallest size of ``spec``'s family) keeps :func:`align_frames`' frames.
    For a larger size, on the public digits' block activations:

    - ``A``: trained (Adam, lr 1e-2, ``steps`` steps from a random orthonormal start) so
      that ``x A^T`` matches the anchor's codes (mean squared error) plus ``orthogonality``
      times the mean squared cosine between different rows of ``A``; then replaced by the
      nearest row-orthonormal matrix;
    - ``B``: the anchor's ``B`` mapped by the ridge regression ``M`` of this size's block
      outputs on the anchor's (ridge ``ridge`` times the sample count), ``B = M B_anchor``,
      made column-orthonormal;
    - a gain per side that gives the codes the anchor's spread, as in :func:`align_frames`.

    The tower features (the first block's input) and the logits (the head's output) are the
    same space at every size and keep the anchor's frames.
    """
    anchor = _smallest(spec).replace(rank=spec.rank)
    ref = align_frames(anchor)
    if spec == anchor:
        return ref
    acts_ref, acts_own = _block_activations(anchor), _block_activations(spec)
    frames = []
    for k in range(len(spec.blocks)):
        (xa, ya), (xs, ys) = acts_ref[k], acts_own[k]
        frame = dict(ref[k])
        if k > 0:
            target = xa @ ref[k]["a"].T
            gen = torch.Generator().manual_seed(0)
            start = torch.randn(spec.rank, xs.shape[1], generator=gen)
            a = nn.Parameter(_orthonormal_rows(start))
            opt = torch.optim.Adam([a], lr=1e-2)
            off = ~torch.eye(spec.rank, dtype=torch.bool)
            with torch.enable_grad():
                for _ in range(steps):
                    unit = nn.functional.normalize(a, dim=1)
                    cos = (unit @ unit.T)[off]
                    loss = ((xs @ a.T - target) ** 2).mean() + orthogonality * (cos**2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            a = _orthonormal_rows(a.detach())
            frame.update(a=a, gain_in=float(target.std() / (xs @ a.T).std()))
        if k < len(spec.blocks) - 1:
            ya64, ys64 = ya.double(), ys.double()
            reg = ridge * len(ya) * torch.eye(ya.shape[1], dtype=torch.float64)
            m = ys64.T @ ya64 @ torch.linalg.inv(ya64.T @ ya64 + reg)
            b = _orthonormal_rows((m @ ref[k]["b"].double()).T).T
            frame.update(b=b, gain_out=float((ys @ b).std() / (ya @ ref[k]["b"]).std()))
        frames.append(frame)
    return frames


@torch.no_grad()
def frame_agreement(spec: HeteroSpec, features: torch.Tensor | None = None) -> dict[str, float]:
    """How well ``spec``'s codes match the anchor's (the smallest size): the mean R^2 over the
    ``r`` codes, on the public digits or on given tower ``features`` ``(n, 64)`` (e.g. a
    client's images). 1 = the same codes; 0 = no better than their mean.

    Three places: what the first block reads (``gain_in * A x``, the codes ``P`` sees), what
    the first block's output looks like through its ``B`` (the space its ``P`` writes into),
    and what the head block reads."""
    codes = {}
    for role, s in (("anchor", _smallest(spec).replace(rank=spec.rank)), ("own", spec)):
        frames, centred = align_frames(s), _block_activations(s, features)
        codes[role] = {
            "first block reads": frames[0]["gain_in"] * centred[0][0] @ frames[0]["a"].T,
            "first block writes": centred[0][1] @ frames[0]["b"] / frames[0]["gain_out"],
            "head block reads": frames[1]["gain_in"] * centred[1][0] @ frames[1]["a"].T,
        }
    out = {}
    for name, target in codes["anchor"].items():
        r2 = 1 - ((codes["own"][name] - target) ** 2).sum(0) / (target**2).sum(0)
        out[name] = float(r2.mean())
    return out


FRAME_KEYS = ("a", "b", "gain_in", "gain_out")


def block_frames(spec: HeteroSpec, align, layers: list[nn.Linear]) -> list[dict]:
    """The frames of ``spec``'s block layers: :func:`align_frames` when ``align`` is None,
    else ``align(spec)``, checked (a ``ValueError`` names ``align``)."""
    if align is None:
        return align_frames(spec)
    check_align(align)
    name = getattr(align, "__qualname__", repr(align))
    frames = align(spec)
    if not isinstance(frames, (list, tuple)) or len(frames) != len(spec.blocks):
        raise ValueError(
            f"align={name} must return a list of {len(spec.blocks)} dicts (one per block "
            f"layer of {spec.label}, like align_frames); got {type(frames).__name__}"
        )
    out = []
    for k, frame in enumerate(frames):
        layer = layers[spec.blocks[k]]
        if not isinstance(frame, dict) or not {"a", "b"} <= set(frame) <= set(FRAME_KEYS):
            keys = sorted(frame) if isinstance(frame, dict) else type(frame).__name__
            raise ValueError(
                f"align={name}: block {k} of {spec.label} must be a dict with 'a' and 'b' "
                f"(optionally 'gain_in', 'gain_out'); got {keys}"
            )
        a = torch.as_tensor(frame["a"], dtype=torch.float32)
        b = torch.as_tensor(frame["b"], dtype=torch.float32)
        want_a, want_b = (spec.rank, layer.in_features), (layer.out_features, spec.rank)
        if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
            raise ValueError(
                f"align={name}: block {k} of {spec.label} needs a {want_a} and b {want_b}; "
                f"got a {tuple(a.shape)}, b {tuple(b.shape)}"
            )
        gains = {g: float(frame.get(g, 1.0)) for g in ("gain_in", "gain_out")}
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()) or not all(
            math.isfinite(v) for v in gains.values()
        ):
            raise ValueError(f"align={name}: block {k} of {spec.label} has non-finite values")
        out.append({"a": a, "b": b, **gains})
    return out


def check_align(align) -> None:
    if align is not None and not callable(align):
        raise ValueError(
            f"align={align!r} must be None (align_frames) or a function spec -> list of "
            "frame dicts, like align_frames"
        )
