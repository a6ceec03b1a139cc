"""FedMVP's server: weigh each client by how similar its model is to the others.

FedMVP (Che et al., ECML-PKDD 2024) runs every uploaded client model on a probe set the server
holds, compares the representations pairwise with CKA, builds a client similarity graph and
averages the models with weights proportional to each client's importance in that graph (its
weighted degree, as in FedMVP's code). A client whose model represents the probe data unlike
everyone else's (corrupted data, a broken modality) gets a small weight.

Where the probe comes from is the caller's choice, and it matters. FedMVP's paper says its
server uses generated data (its released code does not include that step). The kit's recipes
so far hand the server a held-out split of the clients' own distribution (notebook 06,
:mod:`fedlab_mm.recipes`): in-distribution data a real server would not have, which flatters
the graph. Notebook 06 measures the graph with a probe the server could really make beside it.

The server sees only what FedAvg sees (the uploaded states) plus its own probe set: never a
client's data. The probe set's size matters, because CKA is biased upwards for small ``n``
(roughly ``p / (n + p)`` for unrelated features); it is reported on the strategy.
"""

from __future__ import annotations

import numpy as np
import torch

from .cka import linear_cka
from .federated import ClientUpdate, Strategy, weighted_average
from .models import ModelSpec, build_model

__all__ = ["CKAGraph", "importance", "CENTRALITIES", "probe_representations"]

CENTRALITIES = ("degree", "eigenvector")


def importance(graph: torch.Tensor, centrality: str = "degree") -> torch.Tensor:
    """Normalised importance of each node of a symmetric similarity graph ``(N, N)``.

    ``"degree"``: the weighted degree ``sum_j S_ij`` (FedMVP's code); ``"eigenvector"``: the
    leading eigenvector of ``S`` (its entries share one sign for a non-negative ``S``).
    Returns non-negative weights summing to 1 (uniform if the graph is all zeros).
    """
    if centrality not in CENTRALITIES:
        raise ValueError(f"centrality={centrality!r} must be one of {CENTRALITIES}")
    s = torch.as_tensor(graph, dtype=torch.float64).clamp_min(0.0)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"graph must be square, got shape {tuple(s.shape)}")
    if centrality == "degree":
        score = s.sum(1)
    else:
        _, vectors = torch.linalg.eigh(0.5 * (s + s.T))
        score = vectors[:, -1].abs()
    if score.sum() <= 0:
        return torch.full((len(s),), 1.0 / len(s), dtype=torch.float64)
    return score / score.sum()


@torch.no_grad()
def probe_representations(model, probe, representation: str = "joint") -> torch.Tensor:
    """``(n, width)`` representation of the probe set: a key of ``model.features()`` (e.g.
    ``"joint"``) or the name of a module, whose output is taken with a forward hook."""
    model.eval()
    inputs, present = probe.modalities, probe.available.float()
    if representation in ("joint", "logits"):
        return model.features(inputs, present)[representation]
    modules = dict(model.named_modules())
    if representation not in modules:
        raise ValueError(
            f"representation={representation!r}: use 'joint', 'logits' or a module name of "
            f"the model ({[n for n in modules if n][:12]} ...)"
        )
    captured = {}
    hook = modules[representation].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("out", out)
    )
    try:
        model(inputs, present)
    finally:
        hook.remove()
    return captured["out"].reshape(len(probe), -1)


class CKAGraph(Strategy):
    """Aggregate with weights from the CKA similarity graph of the client models.

    Parameters
    ----------
    spec : ModelSpec
        To rebuild each uploaded model on the server.
    probe : MultimodalDataset
        Server-side inputs; labels unused. See the module docstring on where they come from.
    representation : str
        What to compare: ``"joint"`` (default), ``"logits"`` or a module name.
    centrality : {"degree", "eigenvector"}
    power : float
        Weights proportional to ``importance ** power`` (1 = FedMVP; larger is sharper).
    normalize_rows : bool
        Scale each probe sample's representation to unit norm before CKA, as FedMVP's
        ``cka_similarity`` does (default False: plain linear CKA).

    After every round ``graph`` holds the latest ``(N, N)`` CKA matrix, ``weights`` the
    weights used and ``client_ids`` their order; ``probe_size`` is ``len(probe)``.
    """

    name = "CKA graph"

    def __init__(
        self,
        spec: ModelSpec,
        probe,
        representation: str = "joint",
        centrality: str = "degree",
        power: float = 1.0,
        normalize_rows: bool = False,
    ) -> None:
        if centrality not in CENTRALITIES:
            raise ValueError(f"centrality={centrality!r} must be one of {CENTRALITIES}")
        if not np.isfinite(power) or power <= 0:
            raise ValueError(f"power={power} must be a finite number > 0")
        if len(probe) < 4:
            raise ValueError(f"the probe set has {len(probe)} samples; CKA needs far more (>= 4)")
        if probe.names != spec.names:
            raise ValueError(f"probe has modalities {probe.names}, the model {spec.names}")
        self.spec, self.probe = spec, probe
        self.representation, self.centrality, self.power = representation, centrality, power
        self.normalize_rows = bool(normalize_rows)
        self.probe_size = len(probe)
        self._model = build_model(spec)
        self.graph = self.weights = None
        self.client_ids: list[int] = []

    def similarity_graph(self, updates: list[ClientUpdate]) -> torch.Tensor:
        """``(N, N)`` linear CKA between the clients' representations of the probe set."""
        reps = []
        for u in updates:
            self._model.load_state_dict(u.state, strict=False)
            reps.append(probe_representations(self._model, self.probe, self.representation))
        n = len(reps)
        graph = torch.eye(n, dtype=torch.float64)
        for i in range(n):
            for j in range(i + 1, n):
                graph[i, j] = graph[j, i] = linear_cka(
                    reps[i], reps[j], normalize_rows=self.normalize_rows
                )
        return graph

    def aggregate(self, rnd, global_state, updates):
        self._model.load_state_dict(global_state)  # the parts clients do not upload
        self.graph = self.similarity_graph(updates)
        weights = importance(self.graph, self.centrality) ** self.power
        self.weights = weights / weights.sum()
        self.client_ids = [u.client_id for u in updates]
        new = dict(global_state)
        new.update(weighted_average([u.state for u in updates], self.weights.numpy()))
        return new

    def __repr__(self) -> str:
        return (
            f"CKAGraph(representation={self.representation!r}, centrality={self.centrality!r},"
            f" power={self.power:g}, normalize_rows={self.normalize_rows},"
            f" probe_size={self.probe_size})"
        )
