"""Fills learned from the client's own samples: :class:`KNN` (copy the nearest local sample's
value) and :class:`Regression` (a ridge map from each present modality to the missing one)."""

from __future__ import annotations

import torch

from .base import Completion, Mean, flat

__all__ = ["KNN", "Regression"]


class KNN(Completion):
    """Average the missing modality over the ``k`` nearest local samples that have it.

    Distance: mean over the modalities both samples have of the squared Euclidean distance
    per feature. Rows that share no modality with any candidate fall back to the mean.
    """

    name = "knn"

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} must be an integer >= 1")
        self.k = k

    def fit(self, data):
        super().fit(data)
        self.data_ = data
        self.mean_ = Mean().fit(data)
        return self

    def unfillable(self):
        return self.mean_.unfillable()

    def predict(self, data, target, rows):
        ref, t = self.data_, data.names.index(target)
        cand = torch.nonzero(ref.present[:, t]).flatten()
        if len(cand) == 0:
            return None
        dist = torch.zeros(len(rows), len(cand), dtype=torch.float64)
        count = torch.zeros_like(dist)
        for j, m in enumerate(data.names):
            if j == t:
                continue
            q, c = flat(data.modalities[m][rows]), flat(ref.modalities[m][cand])
            both = data.available[rows, j].unsqueeze(1) & ref.present[cand, j].unsqueeze(0)
            d = torch.cdist(q, c).pow(2) / q.shape[1]
            dist += torch.where(both, d, torch.zeros_like(d))
            count += both.double()
        dist = torch.where(count > 0, dist / count.clamp_min(1), torch.full_like(dist, torch.inf))
        k = min(self.k, len(cand))
        near_dist, nearest = dist.topk(k, dim=1, largest=False)  # (q, k)
        weight = torch.isfinite(near_dist).double().unsqueeze(-1)  # only real neighbours count
        neighbours = flat(ref.modalities[target][cand])[nearest]  # (q, k, features)
        values = (neighbours * weight).sum(1) / weight.sum(1).clamp_min(1)
        lonely = torch.isinf(dist).all(1)
        if lonely.any():
            values[lonely] = self.mean_.means_[target].reshape(1, -1)
        return values


class Regression(Completion):
    """Ridge maps from each other modality to the missing one, fitted on local pairs.

    For every (source, target) pair with at least ``min_pairs`` local samples that have
    both, a ridge regression on centred source features (penalty ``alpha`` times the number
    of pairs times the mean feature variance); a row is filled with the
    mean prediction over its available sources (the local mean if it has none).
    """

    name = "regression"

    def __init__(self, alpha: float = 1.0, min_pairs: int = 5) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha={alpha} must be > 0")
        self.alpha, self.min_pairs = float(alpha), int(min_pairs)

    def fit(self, data):
        super().fit(data)
        self.mean_ = Mean().fit(data)
        self.maps_ = {}
        for s, src in enumerate(data.names):
            for t, tgt in enumerate(data.names):
                both = data.present[:, s] & data.present[:, t]
                if s != t and int(both.sum()) >= self.min_pairs:
                    self.maps_[src, tgt] = self._ridge(
                        flat(data.modalities[src][both]), flat(data.modalities[tgt][both])
                    )
        return self

    def _ridge(self, x, y):
        # Centred, not standardised: a pixel that is almost always 0 would get a tiny std and a
        # huge weight. The penalty is scaled by the mean feature variance instead.
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        n, d = xc.shape
        lam = self.alpha * n * float(xc.pow(2).mean()) + 1e-8
        if d <= n:  # primal: (X^T X + lam I) W = X^T Y
            w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(d, dtype=xc.dtype), xc.T @ yc)
        else:  # dual: W = X^T (X X^T + lam I)^-1 Y
            w = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(n, dtype=xc.dtype), yc)
        return mx, w, my

    def unfillable(self):
        return self.mean_.unfillable()

    def predict(self, data, target, rows):
        total = torch.zeros(
            len(rows), flat(data.modalities[target][:1]).shape[1], dtype=torch.float64
        )
        count = torch.zeros(len(rows), 1, dtype=torch.float64)
        for s, src in enumerate(data.names):
            if (src, target) not in self.maps_:
                continue
            mx, w, my = self.maps_[src, target]
            use = data.available[rows, s]
            if use.any():
                x = flat(data.modalities[src][rows[use]])
                total[use] += (x - mx) @ w + my
                count[use] += 1
        mean = self.mean_.means_[target]
        if mean is None:
            ok = count.flatten() > 0
            return (total / count.clamp_min(1), ok) if ok.any() else None
        fallback = mean.reshape(1, -1).expand_as(total)
        return torch.where(count > 0, total / count.clamp_min(1), fallback)

    def __repr__(self) -> str:
        return f"Regression(alpha={self.alpha:g})"
