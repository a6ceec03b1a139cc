"""Heterogeneous clients: FedMosaic's RELA and Co-LoRA's dimension-invariant adapters.

FedMosaic / Co-LoRA ("Not All Clients Are Equal", arXiv 2506.11024; ICLR 2026 as "Co-LoRA")
personalises federated learning when clients differ in both their tasks and their models:

- **Co-LoRA layers** (:class:`CoLoRALinear`), for a batch of row vectors ``x``:
  ``y = x W0^T + s [g (x A^T P1 + Q1) B^T + (1 - g) (x A^T P2 + Q2) B^T]`` with ``A (r, d_in)``
  row-orthonormal and ``B (d_out, r)`` column-orthonormal, both frozen, and small
  ``P (r, r)``, ``Q (1, r)`` that train. ``P`` and ``Q`` have the same shape whatever the
  layer's width, so models of different sizes can average them. Branch 1 holds what the
  server sent (frozen locally), branch 2 the client's own (trained), and a gate
  ``g = sigmoid(x . w)`` mixes them (with noise while training). ``P = Q = 0`` at the start:
  the adapter is a no-op.
- Other adapted layers carry a plain dual LoRA (:class:`DualLoRALinear`), shared only among
  clients with the same architecture.
- **RELA** (:class:`RELA`): each client sends a *task vector*, the last-layer gradient of a
  small frozen anchor model on its data (truncated, optionally noised); the server's cosine
  similarity of those vectors decides whose adapters each client receives:
  ``w_ij = softmax_{j != i}(S_ij / T)``.

Following the authors' code (MECHANISMS.md section 4), except where stated [R]:

- the model family is an MLP over the frozen public image tower's 64-d features
  (:mod:`fedlab_mm.frozen`), pretrained on the public digits, in three sizes
  (:data:`SIZES`); the frozen head is the pretrained 10-way digit classifier, so every task
  is learned through the adapters alone [R];
- two Co-LoRA *block* layers per model, matched across sizes by position: the first hidden
  layer (it reads the tower's features, the same space at every size) and the head (it writes
  the ten logits, the same space at every size); the paper uses four blocks inside an LLM [R];
- **A/B alignment, simplified** [R] (:func:`align_frames`): the smallest model's frames are the
  top-``r`` singular directions of its frozen block weights; a larger model takes its own
  top directions, rotated (orthogonal Procrustes) so that its codes on the public digits match
  the smallest model's, and a scalar gain per side that equalises their spread; shared spaces
  keep the smallest model's frame. The paper fits ``A`` with an MSE plus orthogonality loss and
  maps ``B`` with a CCA-style whitening. Another alignment can be tried without editing the
  kit: ``align=`` of :class:`HeteroNet`, :meth:`HeteroSpec.build` and :func:`pq_transfer`;
- the task vector is the closed-form gradient of the cross-entropy with respect to the anchor's
  head weight, keeping the first 40% of its columns. The authors' code takes the gradient of
  the layer *before* the head (an LLM's last MLP down-projection, the error sent back through
  the frozen head and final norm) and keeps the first 40% of its *rows*;
  ``task_vector(layer="penultimate")`` computes that form on the kit's anchor. The default
  stays the head's: notebook 08 measures group recovery with both, and neither is clearly
  better (mean ARI 1.00 and 0.97 without noise, 0.81 and 0.90 at noise of once the RMS).

Measured (notebook 08, README): the similarity recovers the task groups, but in this small
setting sharing does not beat local training: P/Q moved between independently pretrained sizes
keep only part of what they do in their own size (:func:`pq_transfer`), and the persistent
local branch learns around the global one.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import frozen
from .client import CrossEntropy, LocalTrainer
from .federated import Recipe
from .models import SpecMethods
from .strategies import LocalOnly, Strategy

__all__ = [
    "HeteroSpec",
    "SIZES",
    "CoLoRALinear",
    "DualLoRALinear",
    "HeteroNet",
    "tower_features",
    "align_frames",
    "frame_agreement",
    "TASKS",
    "ALL_TASKS",
    "task_labels",
    "task_clients",
    "task_vector",
    "client_task_vectors",
    "task_groups",
    "group_recovery",
    "TaskVector",
    "relevance",
    "rela_weights",
    "RELA",
    "accuracy_by_size",
    "without_branch",
    "forced_gate",
    "pq_transfer",
    "mosaic",
    "local_only",
]

IN_DIM = frozen.TOWER_WIDTH  # 64: the public tower's features


# ----------------------------------------------------------------- the model family
@dataclass(frozen=True)
class HeteroSpec(SpecMethods):
    """One size of the model family: ``depth`` hidden layers of ``width`` units over the
    tower's 64-d features, a frozen 10-way head; Co-LoRA adapters of rank ``rank``.

    Attributes
    ----------
    width, depth : int
        Hidden width and number of hidden layers (depth >= 2: two block layers).
    rank : int
        ``r`` of every adapter; P is ``(r, r)``, Q ``(1, r)`` at any width.
    scale : float
        ``alpha / r``.
    """

    width: int = 32
    depth: int = 2
    rank: int = 8
    scale: float = 2.0
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name, low in (("width", 8), ("depth", 1), ("rank", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if self.rank > min(self.width, self.num_classes):
            raise ValueError(
                f"rank={self.rank} must be <= width={self.width} and <= num_classes="
                f"{self.num_classes} (the head carries a Co-LoRA block)"
            )
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale={self.scale} must be a finite number > 0")
        if self.num_classes != 10:
            raise ValueError("num_classes must be 10: the frozen head is the digit classifier")

    names = property(lambda self: ["image"])
    # Co-LoRA layers, low to high: the first hidden layer and the head (index ``depth``)
    blocks = property(lambda self: (0, self.depth))

    @property
    def label(self) -> str:
        return f"{self.width}x{self.depth}"

    def build(self, align=None) -> HeteroNet:
        """The model of this size; ``align`` as in :class:`HeteroNet`."""
        return HeteroNet(self, align)


SIZES = {
    "small": HeteroSpec(32, 2),
    "medium": HeteroSpec(64, 3),
    "large": HeteroSpec(128, 4),
}


def _zero_param(*shape) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


class _Gate(nn.Module):
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
        self.gate = _Gate(base.in_features)

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
        self.gate = _Gate(base.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        first = (x @ self.a_global.T) @ self.b_global.T
        second = (x @ self.a_local.T) @ self.b_local.T
        return self.base(x) + self.scale * (g * first + (1 - g) * second)


def _base_layers(spec: HeteroSpec) -> tuple[list[nn.Linear], nn.Linear]:
    dims = [IN_DIM] + [spec.width] * spec.depth
    return [nn.Linear(dims[i], dims[i + 1]) for i in range(spec.depth)], nn.Linear(
        spec.width, spec.num_classes
    )


def _forward_base(layers, x: torch.Tensor, record: list | None = None, head=None):
    """Hidden layers with ReLU (then ``head`` without, if given); ``record`` collects each
    layer's (input, output)."""
    for layer in [*layers, head] if head is not None else layers:
        out = layer(x)
        if record is not None:
            record.append((x, out))
        x = out if layer is head else torch.relu(out)
    return x


_PRETRAIN_STEPS = 300


@lru_cache(maxsize=8)
def _pretrained(width: int, depth: int) -> dict:
    """The base MLP of one size, trained on the public digits' tower features (seeded).

    Trained once per machine: the weights are kept in :func:`fedlab_mm.config.cache_dir`
    (one safetensors file per size, keyed by the recipe and the torch version), so test
    workers, notebook kernels and grid workers load them instead of training again.
    """
    from .data import _cached

    params = {"width": width, "depth": depth, "steps": _PRETRAIN_STEPS, "lr": 3e-3, "seed": 0,
              "torch": torch.__version__}  # fmt: skip
    flat = _cached("hetero-base", params, lambda: _train_base(width, depth), cache=True)
    return {
        "layers": [{k: flat[f"layers.{i}.{k}"] for k in ("weight", "bias")} for i in range(depth)],
        "head": {k: flat[f"head.{k}"] for k in ("weight", "bias")},
    }


def _train_base(width: int, depth: int) -> dict[str, torch.Tensor]:
    """Train one size's base MLP; its weights as a flat ``{"layers.0.weight": ...}`` dict."""
    from .data import public_digits

    pub = public_digits()
    x, y = frozen.image_features(pub.modalities["image"]), pub.y
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(0)
        layers, head = _base_layers(HeteroSpec(width, depth))
        params = [p for m in [*layers, head] for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=3e-3)
        for _ in range(_PRETRAIN_STEPS):
            loss = F.cross_entropy(head(_forward_base(layers, x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    named = [(f"layers.{i}", m) for i, m in enumerate(layers)] + [("head", head)]
    return {
        f"{name}.{k}": v.detach().clone() for name, m in named for k, v in m.state_dict().items()
    }


def _loaded_base(spec: HeteroSpec):
    layers, head = _base_layers(spec)
    state = _pretrained(spec.width, spec.depth)
    for layer, s in zip(layers, state["layers"]):
        layer.load_state_dict(s)
    head.load_state_dict(state["head"])
    return layers, head


@torch.no_grad()
def _block_activations(spec: HeteroSpec, x: torch.Tensor | None = None):
    """(inputs, outputs) of each block layer, centred, on tower features ``x`` (default: the
    public digits')."""
    from .data import public_digits

    layers, head = _loaded_base(spec)
    record: list = []
    if x is None:
        x = frozen.image_features(public_digits().modalities["image"])
    _forward_base(layers, x.float(), record, head)
    return [(x - x.mean(0), y - y.mean(0)) for x, y in (record[i] for i in spec.blocks)]


def _block_weights(spec: HeteroSpec) -> list[torch.Tensor]:
    layers, head = _loaded_base(spec)
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
    anchor = (anchor or SIZES["small"]).replace(rank=spec.rank)
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


@torch.no_grad()
def frame_agreement(spec: HeteroSpec, features: torch.Tensor | None = None) -> dict[str, float]:
    """How well ``spec``'s codes match the anchor's (the smallest size): the mean R^2 over the
    ``r`` codes, on the public digits or on given tower ``features`` ``(n, 64)`` (e.g. a
    client's images). 1 = the same codes; 0 = no better than their mean.

    Three places: what the first block reads (``gain_in * A x``, the codes ``P`` sees), what
    the first block's output looks like through its ``B`` (the space its ``P`` writes into),
    and what the head block reads."""
    codes = {}
    for role, s in (("anchor", SIZES["small"].replace(rank=spec.rank)), ("own", spec)):
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


_FRAME_KEYS = ("a", "b", "gain_in", "gain_out")


def _block_frames(spec: HeteroSpec, align, layers: list[nn.Linear]) -> list[dict]:
    """The frames of ``spec``'s block layers: :func:`align_frames` when ``align`` is None,
    else ``align(spec)``, checked (a ``ValueError`` names ``align``)."""
    if align is None:
        return align_frames(spec)
    _check_align(align)
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
        if not isinstance(frame, dict) or not {"a", "b"} <= set(frame) <= set(_FRAME_KEYS):
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


def _check_align(align) -> None:
    if align is not None and not callable(align):
        raise ValueError(
            f"align={align!r} must be None (align_frames) or a function spec -> list of "
            "frame dicts, like align_frames"
        )


class HeteroNet(nn.Module):
    """The model family: frozen pretrained MLP layers with adapters, a frozen digit head.

    Inputs: images ``(B, 1, 28, 28)`` or their tower features ``(B, 64)``
    (:func:`tower_features`). ``features()`` returns ``{"joint": h, "logits": ...}``.

    ``align`` gives the Co-LoRA blocks' frozen frames: None (the default) uses
    :func:`align_frames`; any function ``align(spec)`` returning the same kind of list (one
    dict per block, low to high, with ``a (rank, d_in)``, ``b (d_out, rank)`` and optional
    scalar ``gain_in``, ``gain_out``, default 1) replaces it, e.g. to try another alignment
    in :func:`pq_transfer`. The spec stays as it is (hashable, JSON-friendly), so federated
    runs, which build every model from its spec, use :func:`align_frames`.
    """

    def __init__(self, spec: HeteroSpec, align=None) -> None:
        super().__init__()
        self.spec, self.align = spec, align
        layers, head = _loaded_base(spec)
        frames = dict(zip(spec.blocks, _block_frames(spec, align, [*layers, head])))
        self.layers = nn.ModuleList(
            CoLoRALinear(layer, scale=spec.scale, **frames[i])
            if i in frames
            else DualLoRALinear(layer, spec.rank, spec.scale)
            for i, layer in enumerate([*layers, head])
        )

    def features(self, modalities: dict, present=None) -> dict:
        x = frozen.image_input(modalities, frozen.image_features, IN_DIM, "tower features")
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return {"joint": x, "logits": self.layers[-1](x)}

    def forward(self, modalities: dict, present=None) -> torch.Tensor:
        return self.features(modalities, present)["logits"]


def tower_features(dataset):
    """``dataset`` with its images replaced by the frozen tower's 64-d features."""
    images = dataset.modalities.get("image")
    if images is None or tuple(images.shape[1:]) != (1, 28, 28):
        shape = None if images is None else tuple(images.shape[1:])
        raise ValueError(f"tower_features needs 'image' of shape (n, 1, 28, 28); got {shape}")
    feats = torch.cat(
        [frozen.image_features(images[i : i + 512]) for i in range(0, len(images), 512)]
    )
    return dataset.replace(modalities={**dataset.modalities, "image": feats})


# ----------------------------------------------------------------- tasks
TASKS = ("digit", "parity", "complement")
ALL_TASKS = ("digit", "parity", "complement", "high")


def task_labels(y: torch.Tensor, task: str) -> torch.Tensor:
    """Labels of a task on the digits: ``digit`` (0-9), ``parity`` (0 even, 1 odd),
    ``complement`` (9 - digit: the digit that adds up to nine with it), ``high`` (0 for 0-4,
    1 for 5-9). All answer through the same 10-way head, so the tasks conflict: a seven is
    "7", "1" or "2" depending on the task."""
    if task not in ALL_TASKS:
        raise ValueError(f"task={task!r} must be one of {ALL_TASKS}")
    if task == "digit":
        return y.clone()
    if task == "complement":
        return 9 - y
    return (y % 2) if task == "parity" else (y >= 5).long()


def task_clients(
    dataset,
    tasks=TASKS,
    sizes=("small", "medium", "large", "small", "medium", "large"),
    alpha: float = 5.0,
    train_size: int | None = None,
    seed: int = 0,
):
    """One client per (task, size): the data set is split evenly at random between tasks,
    then among each task's clients by a Dirichlet over the digits (``alpha``); ``train_size``
    keeps only that many training samples per client (scarce data, where sharing pays).

    Returns ``(clients, specs, groups)``: ClientData list (ids 0..N-1, task-major), a dict
    client id -> HeteroSpec, and the task index of each client.
    """
    from .partition import ClientData, dirichlet

    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        raise ValueError(f"sizes={list(sizes)} must name sizes among {list(SIZES)}")
    rng = np.random.default_rng(seed)
    owner = rng.permutation(len(dataset)) % len(tasks)
    clients, specs, groups = [], {}, []
    for t, task in enumerate(tasks):
        part = dataset.subset(torch.from_numpy(np.flatnonzero(owner == t)))
        split = dirichlet(part, len(sizes), alpha=alpha, seed=1000 * seed + t, min_size=20)
        for local in split.clients(part, seed=1000 * seed + t):
            cid = len(clients)
            train = local.train.replace(y=task_labels(local.train.y, task))
            if train_size is not None:
                keep = torch.from_numpy(rng.permutation(len(train))[:train_size])
                train = train.subset(keep)
            test = local.test.replace(y=task_labels(local.test.y, task))
            clients.append(ClientData(cid, train, test))
            specs[cid] = SIZES[sizes[local.client_id]]
            groups.append(t)
    return clients, specs, groups


# ----------------------------------------------------------------- RELA
@lru_cache(maxsize=1)
def _anchor_model():
    layers, head = _loaded_base(SIZES["small"])
    return layers, head


TASK_LAYERS = ("head", "penultimate")


@torch.no_grad()
def task_vector(
    x: torch.Tensor, y: torch.Tensor, keep: float = 0.4, layer: str = "head"
) -> torch.Tensor:
    """A client's task vector: the gradient of the mean cross-entropy of the frozen anchor
    model with respect to one of its weights, in closed form. ``x``: tower features ``(n, 64)``.

    ``layer="head"`` (the kit's default): the head weight, ``(softmax - onehot)^T h / n``,
    keeping the first ``keep`` share of its *columns*: ``(10, ceil(keep * 32))``.

    ``layer="penultimate"`` (the form of FedMosaic's released code): the weight of the layer
    before the head. The error is sent back through the frozen head and the ReLU,
    ``delta = ((softmax - onehot) W_head) * 1[z > 0]``, then ``delta^T h_in / n``, keeping the
    first ``int(keep * 32)`` *rows* (output units): ``(12, 32)`` at ``keep=0.4``.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must lie in (0, 1]")
    if layer not in TASK_LAYERS:
        raise ValueError(f"layer={layer!r} must be one of {TASK_LAYERS}")
    layers, head = _anchor_model()
    if layer == "head":
        h = _forward_base(layers, x.float())  # (n, 32)
        err = torch.softmax(head(h), dim=1) - F.one_hot(y, head.out_features).float()  # (n, C)
        grad = err.T @ h / len(y)  # (C, 32)
        return grad[:, : math.ceil(keep * h.shape[1])]
    h_in = _forward_base(layers[:-1], x.float())  # (n, 32): the penultimate layer's input
    z = layers[-1](h_in)  # (n, 32), before its ReLU
    err = torch.softmax(head(torch.relu(z)), dim=1) - F.one_hot(y, head.out_features).float()
    delta = (err @ head.weight) * (z > 0).float()  # (n, 32): back through the head and ReLU
    grad = delta.T @ h_in / len(y)  # (32 out, 32 in), the shape of the layer's weight
    return grad[: max(1, int(keep * grad.shape[0]))]


def client_task_vectors(
    clients,
    rounds: int = 5,
    noise: float = 0.0,
    keep: float = 0.4,
    batch_size: int = 64,
    seed: int = 0,
    layer: str = "head",
) -> torch.Tensor:
    """Every client's task vector as RELA would see it after ``rounds`` rounds (one random
    batch a round, Gaussian noise of std ``noise``, averaged as ``g <- (g_new + g) / 2``),
    without any training: the anchor model is frozen. Returns ``(N, rows, cols)`` (see
    :func:`task_vector` for ``layer``)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    upload = TaskVector(keep, noise, batch_size, layer)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in clients:
        g = None
        for _ in range(rounds):
            g = upload.step(c.train, g, gen)
        out.append(g)
    return torch.stack(out)


def task_groups(similarity: torch.Tensor, n_groups: int) -> np.ndarray:
    """Cluster clients into ``n_groups`` from a RELA similarity matrix (average-linkage
    agglomerative clustering on ``1 - S``): the groups the server could see."""
    from sklearn.cluster import AgglomerativeClustering

    s = torch.as_tensor(similarity, dtype=torch.float64).numpy()
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or not 1 <= n_groups <= len(s):
        raise ValueError(f"n_groups={n_groups!r} must be an integer in [1, {len(s)}]")
    if n_groups == 1:
        return np.zeros(len(s), dtype=int)
    distance = np.clip(1.0 - s, 0.0, None)
    model = AgglomerativeClustering(n_clusters=n_groups, metric="precomputed", linkage="average")
    return model.fit_predict(distance)


def group_recovery(similarity: torch.Tensor, groups) -> float:
    """Adjusted Rand index between the clusters of ``similarity`` and the true task
    ``groups``: 1 = recovered exactly, about 0 = no better than chance."""
    from sklearn.metrics import adjusted_rand_score

    groups = np.asarray(groups)
    if len(groups) != len(similarity):
        raise ValueError(f"groups has {len(groups)} entries for {len(similarity)} clients")
    return float(adjusted_rand_score(groups, task_groups(similarity, len(set(groups.tolist())))))


class TaskVector:
    """The client's RELA upload (``LocalTrainer(payload=...)``): a task vector on one random
    batch, plus Gaussian noise of std ``noise``, averaged with the previous rounds' as
    ``g <- (g_new + g) / 2``."""

    def __init__(
        self, keep: float = 0.4, noise: float = 0.0, batch_size: int = 64, layer: str = "head"
    ) -> None:
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise={noise} must be a finite number >= 0")
        if layer not in TASK_LAYERS:
            raise ValueError(f"layer={layer!r} must be one of {TASK_LAYERS}")
        self.keep, self.noise, self.batch_size, self.layer = keep, float(noise), batch_size, layer

    def step(self, data, previous=None, generator=None) -> torch.Tensor:
        """One round: a task vector on a random batch of ``data``, noised, averaged with
        ``previous`` (if any)."""
        idx = torch.randperm(len(data), generator=generator)[: self.batch_size]
        x = data.modalities["image"][idx]
        if x.ndim == 4:
            x = frozen.image_features(x)
        g = task_vector(x, data.y[idx], self.keep, self.layer)
        g = g + self.noise * torch.randn(g.shape, generator=generator)
        return g if previous is None else 0.5 * (g + previous)

    def __call__(self, client) -> dict[str, torch.Tensor]:
        g = self.step(client.data.train, client.state.get("task_vector"))
        client.state["task_vector"] = g
        return {"task_vector": g.clone()}

    def __repr__(self) -> str:
        return f"TaskVector(keep={self.keep}, noise={self.noise:g})"


def relevance(vectors: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` RELA similarity: for each column of the task vectors ``(N, C, k)``, the
    cosine between clients' column vectors, averaged over the columns where both are nonzero
    (a unit the anchor never uses has an all-zero column). Symmetric, unit diagonal."""
    v = torch.as_tensor(vectors, dtype=torch.float64)
    if v.ndim != 3:
        raise ValueError(f"task vectors must be (N, C, k), got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("task vectors contain NaN or infinite values")
    live = (v.norm(dim=1) > 0).double()  # (N, k)
    unit = F.normalize(v, dim=1)  # each column vector to unit length (zero stays zero)
    both = live @ live.T
    if (both.diagonal() == 0).any():
        raise ValueError("a task vector is all zero: no column to compare")
    return torch.einsum("ick,jck->ij", unit, unit) / both.clamp(min=1)


def rela_weights(similarity: torch.Tensor, temperature: float = 0.5, peers=None) -> torch.Tensor:
    """``w_ij = softmax_{j != i}(S_ij / T)``: rows sum to 1, ``w_ii = 0``. ``temperature``
    ``math.inf`` gives uniform weights over the others. ``peers`` ``(N, N)`` bool restricts
    each row to some clients (e.g. the same architecture); a row with no peer is all zero."""
    s = torch.as_tensor(similarity, dtype=torch.float64)
    if not (temperature > 0):
        raise ValueError(f"temperature={temperature} must be > 0 (math.inf: uniform)")
    n = len(s)
    allowed = ~torch.eye(n, dtype=torch.bool)
    if peers is not None:
        allowed = allowed & torch.as_tensor(peers, dtype=torch.bool)
    logits = torch.zeros_like(s) if math.isinf(temperature) else s / temperature
    logits = logits.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(logits, dim=1)
    return torch.nan_to_num(w, nan=0.0)  # rows without any peer


def _arch(state: dict) -> tuple:
    """An architecture signature from the shapes of the non-P/Q adapter keys."""
    return tuple((k, tuple(v.shape)) for k, v in sorted(state.items()) if not _is_pq(k))


def _is_pq(key: str) -> bool:
    return key.endswith(("p_local", "q_local"))


def _pq_layers(state: dict) -> list[str]:
    """The Co-LoRA layers' names in a client's upload, in model order (``layers.0``,
    ``layers.2``, ...): the k-th is matched with the k-th of any other size."""
    names = {k.rsplit(".", 1)[0] for k in state if _is_pq(k)}
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])


class RELA(Strategy):
    """FedMosaic's server: each client's global branch is a relevance-weighted mix of the
    other clients' local adapters.

    Parameters
    ----------
    temperature : float
        ``T`` of :func:`rela_weights` (``math.inf``: uniform over the others).
    share_pq : bool
        Mix the Co-LoRA ``P``/``Q`` across all clients, any size (True), or only within a size.

    Block layers are matched across sizes by position (the k-th block with the k-th); plain
    dual-LoRA layers only within the same architecture. After a round ``similarity`` and
    ``weights`` hold the ``(N, N)`` matrices, ``client_ids`` their order.
    """

    name = "RELA"
    has_global = False

    def __init__(self, temperature: float = 0.5, share_pq: bool = True) -> None:
        if not (temperature > 0):
            raise ValueError(f"temperature={temperature} must be > 0 (math.inf: uniform)")
        self.temperature, self.share_pq = float(temperature), bool(share_pq)
        self.similarity = self.weights = None
        self.client_ids: list[int] = []

    def setup(self, global_state, client_ids):
        self.served: dict[int, dict[str, torch.Tensor]] = {}

    def message(self, client_id, global_state):
        return self.served.get(client_id, {})

    def aggregate(self, rnd, global_state, updates):
        vectors = torch.stack([u.payload["task_vector"] for u in updates])
        self.similarity = relevance(vectors)
        self.client_ids = [u.client_id for u in updates]
        arch = [_arch(u.state) for u in updates]
        same = torch.tensor([[a == b for b in arch] for a in arch])
        self.weights = rela_weights(self.similarity, self.temperature)
        within = rela_weights(self.similarity, self.temperature, peers=same)
        blocks = [_pq_layers(u.state) for u in updates]
        for i, u in enumerate(updates):
            out = {}
            for key in u.state:
                w = within[i]
                if _is_pq(key) and self.share_pq:
                    w = self.weights[i]
                    layer, name = key.rsplit(".", 1)
                    position = blocks[i].index(layer)
                    sources = [f"{blocks[j][position]}.{name}" for j in range(len(updates))]
                else:
                    sources = [key] * len(updates)
                if float(w.sum()) == 0:
                    continue  # nobody to learn this layer from
                mixed = sum(
                    float(w[j]) * updates[j].state[sources[j]]
                    for j in range(len(updates))
                    if w[j] > 0
                )
                out[key.replace("_local", "_global")] = mixed
            self.served[u.client_id] = out
        return global_state

    def state_dict(self):
        return {f"{k}/{n}": v for k, s in self.served.items() for n, v in s.items()}

    def load_state_dict(self, state):
        from .strategies import _unflatten

        self.served = _unflatten(state)

    def __repr__(self) -> str:
        return f"RELA(temperature={self.temperature:g}, share_pq={self.share_pq})"


def accuracy_by_size(history, specs: dict, rnd: int | None = None) -> dict[str, float]:
    """Mean personalised accuracy per model size (``HeteroSpec.label``) at round ``rnd``
    (default: the last evaluated round) of a :class:`History`."""
    df = history.df.query("split == 'personal' and metric == 'accuracy'")
    if df.empty:
        raise ValueError("the history has no personalised accuracy yet: run some rounds first")
    rnd = int(df["round"].max()) if rnd is None else rnd
    df = df[df["round"] == rnd]
    if df.empty:
        raise ValueError(
            f"rnd={rnd} was not evaluated; evaluated: {sorted(set(history.df['round']))}"
        )
    sizes = df["client"].map(lambda c: specs[int(c)].label)
    order = sorted({s.label for s in specs.values()}, key=lambda t: [int(v) for v in t.split("x")])
    means = df.groupby(sizes)["value"].mean()
    return {label: float(means[label]) for label in order if label in means}


def without_branch(model: HeteroNet, branch: str) -> HeteroNet:
    """A copy of ``model`` with the ``branch`` ("global" or "local") adapters silenced: their
    ``B`` (dual LoRA) or ``P`` and ``Q`` (Co-LoRA) set to zero; the gates stay as learned."""
    if branch not in ("global", "local"):
        raise ValueError(f"branch={branch!r} must be 'global' or 'local'")
    silenced = (f"b_{branch}", f"p_{branch}", f"q_{branch}")
    state = {k: torch.zeros_like(v) if k.endswith(silenced) else v
             for k, v in model.state_dict().items()}  # fmt: skip
    twin = HeteroNet(model.spec, model.align)  # the same frames and gains
    twin.load_state_dict(state)
    return twin


@contextmanager
def forced_gate(model: nn.Module, value: float):
    """Within the block every gate of ``model`` outputs ``value`` (1: the global branch only,
    0: the local branch only), e.g. to see what each branch knows on its own."""
    if not 0 <= value <= 1:
        raise ValueError(f"value={value} must lie in [0, 1]")
    gates = [m for m in model.modules() if isinstance(m, _Gate)]
    for gate in gates:
        gate.forced = float(value)
    try:
        yield model
    finally:
        for gate in gates:
            gate.forced = None


def pq_transfer(
    dataset, task: str, n_train: int = 500, steps: int = 300, seed: int = 0, align=None
):
    """How well P/Q travel between sizes: for each size, train only the Co-LoRA ``P``/``Q``
    (all else frozen) on ``n_train`` samples of ``task``; then copy them into every size's
    global branch (its local branch empty, the gate at 0.5 as in training) and measure
    accuracy on held-out samples.

    ``align`` replaces :func:`align_frames` for every model built here (see
    :class:`HeteroNet`): a function ``align(spec)`` returning one frame dict per block. It is
    called once per size.

    Returns a DataFrame, rows = the size P/Q were trained on, columns = the size they run in;
    the diagonal is each size's own accuracy; the first row, ``no P/Q``, is each size with its
    adapters empty (the pretrained digit classifier answering the task).
    """
    import pandas as pd

    n = len(dataset)
    if not 0 < n_train < n:
        raise ValueError(f"n_train={n_train} must lie in (0, {n}) (the rest is the test set)")
    _check_align(align)
    if align is not None:  # one call per size, not one per model built
        align = lru_cache(maxsize=None)(align)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, test = dataset.subset(order[:n_train]), dataset.subset(order[n_train:])
    x, y = train.modalities["image"], task_labels(train.y, task)
    x_test, y_test = test.modalities["image"], task_labels(test.y, task)
    trained = {}
    with torch.random.fork_rng(), torch.enable_grad():
        for spec in SIZES.values():  # fill the frame caches first: built cold, they draw
            spec.build(align)  # random numbers, and the table would depend on what ran before
        torch.manual_seed(seed)
        for name, spec in SIZES.items():
            model = spec.build(align).train()
            params = [p for k, p in model.named_parameters() if _is_pq(k)]
            opt = torch.optim.Adam(params, lr=1e-2)
            for _ in range(steps):
                idx = torch.randint(0, n_train, (32,))
                loss = F.cross_entropy(model({"image": x[idx]}), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            trained[name] = [m for m in model.layers if isinstance(m, CoLoRALinear)]
    table = {"no P/Q": {}}
    for spec in SIZES.values():
        with torch.no_grad():
            hits = spec.build(align).eval()({"image": x_test}).argmax(1) == y_test
        table["no P/Q"][spec.label] = float(hits.float().mean())
    for source, blocks in trained.items():
        row = {}
        for spec in SIZES.values():
            model = spec.build(align).eval()
            targets = [m for m in model.layers if isinstance(m, CoLoRALinear)]
            with torch.no_grad():
                for src, dst in zip(blocks, targets):
                    dst.p_global.copy_(src.p_local)
                    dst.q_global.copy_(src.q_local)
                with forced_gate(model, 0.5):  # as in training, where g is about 0.5
                    hits = model({"image": x_test}).argmax(1) == y_test
            row[spec.label] = float(hits.float().mean())
        table[SIZES[source].label] = row
    return pd.DataFrame(table).T


# ----------------------------------------------------------------- recipes
def _trainer(noise: float, **kwargs) -> LocalTrainer:
    settings = {"optimizer": "adam", "lr": 1e-2, "epochs": 1, **kwargs}
    return LocalTrainer(
        losses=[CrossEntropy()],
        upload=lambda k: k.endswith(("p_local", "q_local", "a_local", "b_local")),
        payload=TaskVector(noise=noise),
        **settings,
    )


def mosaic(specs: dict, temperature=0.5, share_pq=True, noise=0.0, **trainer_kwargs) -> Recipe:
    """FedMosaic for clients with per-client ``specs`` (client id -> HeteroSpec): Co-LoRA
    clients uploading task vectors, the RELA server. ``Simulation(clients, *recipe)``.
    ``trainer_kwargs`` go to :class:`LocalTrainer` (default: Adam, lr 1e-2, 1 epoch)."""
    return Recipe(specs, _trainer(noise, **trainer_kwargs), RELA(temperature, share_pq))


def local_only(specs: dict, **trainer_kwargs) -> Recipe:
    """The baseline: every client trains its own local branch; nothing is shared."""
    return Recipe(specs, _trainer(0.0, **trainer_kwargs), LocalOnly())
