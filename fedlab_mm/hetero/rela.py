"""RELA: task vectors, their relevance, and the server that mixes adapters by it.

Each client sends a *task vector*, the last-layer gradient of a small frozen anchor model on
its data (truncated, optionally noised); the server's cosine similarity of those vectors
decides whose adapters each client receives: ``w_ij = softmax_{j != i}(S_ij / T)``."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .. import pretrained
from ..federated import PersonalizedStrategy
from .base import forward_base, loaded_base
from .model import SIZES

__all__ = [
    "DEAD_COLUMN",
    "RELA",
    "TASK_LAYERS",
    "TaskVector",
    "client_task_vectors",
    "group_recovery",
    "is_pq",
    "rela_weights",
    "relevance",
    "task_groups",
    "task_vector",
]


@lru_cache(maxsize=1)
def _anchor_model():
    layers, head = loaded_base(SIZES["small"])
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
        h = forward_base(layers, x.float())  # (n, 32)
        err = torch.softmax(head(h), dim=1) - F.one_hot(y, head.out_features).float()  # (n, C)
        grad = err.T @ h / len(y)  # (C, 32)
        return grad[:, : math.ceil(keep * h.shape[1])]
    h_in = forward_base(layers[:-1], x.float())  # (n, 32): the penultimate layer's input
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
    without any training: the anchor model is pretrained. Returns ``(N, rows, cols)`` (see
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
            x = pretrained.image_features(x)
        g = task_vector(x, data.y[idx], self.keep, self.layer)
        g = g + self.noise * torch.randn(g.shape, generator=generator)
        return g if previous is None else 0.5 * (g + previous)

    def __call__(self, client) -> dict[str, torch.Tensor]:
        g = self.step(client.data.train, client.state.get("task_vector"))
        client.state["task_vector"] = g
        return {"task_vector": g.clone()}

    def __repr__(self) -> str:
        return f"TaskVector(keep={self.keep}, noise={self.noise:g})"


#: A column whose norm is below this share of its vector's largest column is dead: a unit the
#: anchor never uses leaves rounding residue (norms ~1e-14 seen), not a direction to compare.
DEAD_COLUMN = 1e-6


def relevance(vectors: torch.Tensor, tol: float = DEAD_COLUMN) -> torch.Tensor:
    """``(N, N)`` RELA similarity: for each column of the task vectors ``(N, C, k)``, the
    cosine between clients' column vectors, averaged over the columns where both are live.
    A column is live when its norm exceeds ``tol`` times the largest column norm of the same
    client's vector (a unit the anchor never uses has an all-zero column, up to rounding).
    Symmetric, unit diagonal."""
    v = torch.as_tensor(vectors, dtype=torch.float64)
    if v.ndim != 3:
        raise ValueError(f"task vectors must be (N, C, k), got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("task vectors contain NaN or infinite values")
    if not 0 <= tol < 1:
        raise ValueError(f"tol={tol} must lie in [0, 1)")
    norms = v.norm(dim=1)  # (N, k)
    live = norms > tol * norms.max(dim=1, keepdim=True).values
    if not live.any(dim=1).all():
        raise ValueError("a task vector is all zero: no column to compare")
    unit = F.normalize(v, dim=1) * live[:, None, :]  # dead columns count as zero
    live = live.double()
    return torch.einsum("ick,jck->ij", unit, unit) / (live @ live.T).clamp(min=1)


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
    return tuple((k, tuple(v.shape)) for k, v in sorted(state.items()) if not is_pq(k))


def is_pq(key: str) -> bool:
    return key.endswith(("p_local", "q_local"))


def _pq_layers(state: dict) -> list[str]:
    """The Co-LoRA layers' names in a client's upload, in model order (``layers.0``,
    ``layers.2``, ...): the k-th is matched with the k-th of any other size."""
    names = {k.rsplit(".", 1)[0] for k in state if is_pq(k)}
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])


class RELA(PersonalizedStrategy):
    """FedMosaic's server: each client's global branch is a relevance-weighted mix of the
    other clients' local adapters.

    Parameters
    ----------
    temperature : float
        ``T`` of :func:`rela_weights` (``math.inf``: uniform over the others).
    share_pq : bool
        Mix the Co-LoRA ``P``/``Q`` across all clients, any size (True), or only within a size.
    groups : dict or None
        ``{client_id: group}``: mix only within each client's true group. With
        ``temperature=math.inf`` this is the **oracle** (uniform over the other clients of the
        same task), the mix a server that knew the tasks would serve; None (the paper's RELA)
        lets the task vectors decide alone.

    Block layers are matched across sizes by position (the k-th block with the k-th); plain
    dual-LoRA layers only within the same architecture. After a round ``similarity`` and
    ``weights`` hold the ``(N, N)`` matrices, ``client_ids`` their order; ``served`` each
    client's mixed global branch (:class:`~fedlab_mm.federated.PersonalizedStrategy`).
    """

    name = "RELA"
    has_global = False

    def __init__(self, temperature: float = 0.5, share_pq: bool = True, groups=None) -> None:
        if not (temperature > 0):
            raise ValueError(f"temperature={temperature} must be > 0 (math.inf: uniform)")
        self.temperature, self.share_pq = float(temperature), bool(share_pq)
        self.groups = None if groups is None else {int(k): v for k, v in dict(groups).items()}
        self.similarity = self.weights = None
        self.client_ids: list[int] = []

    def aggregate(self, rnd, global_state, updates):
        vectors = torch.stack([u.payload["task_vector"] for u in updates])
        self.similarity = relevance(vectors)
        self.client_ids = [u.client_id for u in updates]
        arch = [_arch(u.state) for u in updates]
        same = torch.tensor([[a == b for b in arch] for a in arch])
        group = torch.ones_like(same)
        if self.groups is not None:
            missing = [u.client_id for u in updates if u.client_id not in self.groups]
            if missing:
                raise ValueError(f"groups has no group for clients {missing}")
            g = [self.groups[u.client_id] for u in updates]
            group = torch.tensor([[a == b for b in g] for a in g])
        self.weights = rela_weights(self.similarity, self.temperature, peers=group)
        within = rela_weights(self.similarity, self.temperature, peers=same & group)
        blocks = [_pq_layers(u.state) for u in updates]
        for i, u in enumerate(updates):
            out = {}
            for key in u.state:
                w = within[i]
                if is_pq(key) and self.share_pq:
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

    def __repr__(self) -> str:
        oracle = "" if self.groups is None else f", groups of {len(set(self.groups.values()))}"
        return f"RELA(temperature={self.temperature:g}, share_pq={self.share_pq}{oracle})"
