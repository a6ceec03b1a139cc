"""Label and quantity schemes: who holds which samples.

References
----------
- IID, shards: McMahan et al., "Communication-Efficient Learning of Deep Networks from
  Decentralized Data", AISTATS 2017.
- Dirichlet label skew: Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification", 2019; Yurochkin et al., ICML 2019.
- Pathological (k classes per client) and quantity skew: Li, Diao, Chen & He, "Federated
  Learning on Non-IID Data Silos: An Experimental Study", ICDE 2022.

Every function takes ``seed`` (an int or a ``np.random.Generator``) and never touches the
global random state."""

from __future__ import annotations

import numpy as np

from ..seed import as_rng
from .core import Partition, labels_of, record

__all__ = ["dirichlet", "iid", "pathological", "quantity_skew", "shards"]


def _check_clients(num_clients, n: int, min_size: int = 1) -> int:
    if isinstance(num_clients, bool) or not isinstance(num_clients, (int, np.integer)):
        raise ValueError(f"num_clients={num_clients!r} must be an integer >= 1")
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1")
    if num_clients * max(min_size, 1) > n:
        raise ValueError(
            f"num_clients={num_clients} x min_size={max(min_size, 1)} exceeds the {n} samples; "
            "use fewer clients or a smaller min_size"
        )
    return int(num_clients)


def _seed_repr(seed):
    return seed if isinstance(seed, (int, np.integer, type(None))) else "Generator"


def _from_assignment(owner: np.ndarray, num_clients: int, rng) -> list[np.ndarray]:
    """Index arrays from a per-sample client id, each shuffled."""
    order = np.argsort(owner, kind="stable")
    cuts = np.searchsorted(owner[order], np.arange(1, num_clients))
    return [rng.permutation(part) for part in np.split(order, cuts)]


def iid(data, num_clients: int, seed=0) -> Partition:
    """Shuffle and deal: every client gets ``n / num_clients`` samples (+-1), same mix.

    Examples
    --------
    >>> p = iid(np.arange(100) % 10, num_clients=4)
    >>> p.sizes.tolist()
    [25, 25, 25, 25]
    """
    y = labels_of(data)
    num_clients = _check_clients(num_clients, len(y))
    rng = as_rng(seed)
    parts = np.array_split(rng.permutation(len(y)), num_clients)
    return Partition(
        [p.astype(np.int64) for p in parts],
        len(y),
        params=[record("iid", num_clients=num_clients, seed=_seed_repr(seed))],
    )


def dirichlet(
    data, num_clients: int, alpha=0.5, min_size: int = 10, max_tries: int = 100, seed=0
) -> Partition:
    """Label skew: each class is spread over clients by proportions ~ Dirichlet(alpha).

    Small ``alpha`` (0.01) gives each client few classes; large ``alpha`` (100) approaches
    IID. A per-client ``alpha`` (one value per client) makes some clients more skewed than
    others: class c's shares are drawn from Dirichlet(alpha_1, ..., alpha_N).

    ``min_size`` is guaranteed without an endless loop (a known trap of the usual
    rejection-sampling code): up to ``max_tries`` draws are tried, then clients still below
    ``min_size`` are topped up with random samples taken from the largest clients.

    Parameters
    ----------
    data : MultimodalDataset or (n,) int labels
    num_clients : int
    alpha : float or sequence of float (N,)
        Concentration, > 0.
    min_size : int
        Samples each client must hold, >= 0.
    max_tries : int
        Fresh Dirichlet draws before the top-up repair, >= 1.
    seed : int or Generator

    Examples
    --------
    >>> p = dirichlet(np.arange(1000) % 10, num_clients=5, alpha=0.1, min_size=20)
    >>> bool(p.sizes.min() >= 20)
    True
    """
    y = labels_of(data)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size={min_size!r} must be an integer >= 0")
    num_clients = _check_clients(num_clients, len(y), min_size)
    if isinstance(alpha, (str, bytes)) or not np.all(
        [np.isscalar(a) and not isinstance(a, str) for a in np.ravel(np.asarray(alpha, object))]
    ):
        raise ValueError(f"alpha={alpha!r} must be a number or a list of numbers, not text")
    alphas = np.asarray(alpha, dtype=float)
    if alphas.ndim == 0:
        alphas = np.full(num_clients, float(alphas))
    if alphas.shape != (num_clients,):
        raise ValueError(f"alpha must be one number or {num_clients} numbers (one per client)")
    if not np.all(np.isfinite(alphas)) or alphas.min() <= 0:
        raise ValueError(
            f"alpha={alpha!r} must be > 0 (try 0.01 for strong skew, 100 for near-IID)"
        )
    if max_tries < 1:
        raise ValueError(f"max_tries={max_tries} must be >= 1")
    rng = as_rng(seed)
    classes = np.unique(y)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    for _ in range(max_tries):
        owner = np.empty(len(y), dtype=np.int64)
        for members in by_class:
            shares = rng.dirichlet(alphas)
            counts = rng.multinomial(len(members), shares)
            owner[members] = np.repeat(np.arange(num_clients), counts)
        sizes = np.bincount(owner, minlength=num_clients)
        if sizes.min() >= min_size:
            break
    else:
        owner = _top_up(owner, y, num_clients, min_size, rng)
    return Partition(
        _from_assignment(owner, num_clients, rng),
        len(y),
        params=[
            record(
                "dirichlet",
                num_clients=num_clients,
                alpha=alpha if np.isscalar(alpha) else alphas,
                min_size=min_size,
                seed=_seed_repr(seed),
            )
        ],
    )


def _top_up(owner: np.ndarray, y: np.ndarray, num_clients: int, min_size: int, rng) -> np.ndarray:
    """Give clients below ``min_size`` samples of the largest client's most common class.

    Taking one class at a time keeps the skew: at tiny alpha a topped-up client still holds
    (mostly) a single class. Always terminates: the checks guarantee N * min_size <= n.
    """
    owner = owner.copy()
    sizes = np.bincount(owner, minlength=num_clients)
    for k in np.flatnonzero(sizes < min_size):
        while sizes[k] < min_size:
            donor = int(np.argmax(sizes))
            mine = np.flatnonzero(owner == donor)
            common = np.bincount(y[mine]).argmax()
            pool = mine[y[mine] == common]
            take = min(min_size - sizes[k], sizes[donor] - min_size, len(pool))
            owner[rng.permutation(pool)[:take]] = k
            sizes[donor] -= take
            sizes[k] += take
    return owner


def shards(data, num_clients: int, shards_per_client: int = 2, seed=0) -> Partition:
    """Sort by label, cut into ``num_clients * shards_per_client`` equal shards, deal them.

    The FedAvg paper's pathological non-IID split: with 2 shards each client sees at most
    2 classes.
    """
    y = labels_of(data)
    if not isinstance(shards_per_client, (int, np.integer)) or shards_per_client < 1:
        raise ValueError(f"shards_per_client={shards_per_client!r} must be an integer >= 1")
    num_clients = _check_clients(num_clients, len(y), shards_per_client)
    rng = as_rng(seed)
    order = np.argsort(y + rng.random(len(y)) * 0.5, kind="stable")  # by label, random within
    pieces = np.array_split(order, num_clients * shards_per_client)
    deal = rng.permutation(len(pieces)).reshape(num_clients, shards_per_client)
    indices = [rng.permutation(np.concatenate([pieces[s] for s in row])) for row in deal]
    return Partition(
        indices,
        len(y),
        params=[
            record(
                "shards",
                num_clients=num_clients,
                shards_per_client=shards_per_client,
                seed=_seed_repr(seed),
            )
        ],
    )


def pathological(data, num_clients: int, classes_per_client: int = 2, seed=0) -> Partition:
    """Each client holds exactly ``classes_per_client`` classes.

    Classes are dealt round-robin from a shuffled order so every class is used when
    ``num_clients * classes_per_client >= C``; each class's samples are split evenly among
    the clients holding it.
    """
    y = labels_of(data)
    classes = np.unique(y)
    c = len(classes)
    if not isinstance(classes_per_client, (int, np.integer)) or not 1 <= classes_per_client <= c:
        raise ValueError(
            f"classes_per_client={classes_per_client!r} must be an integer in 1..{c} "
            f"(the data has {c} classes)"
        )
    num_clients = _check_clients(num_clients, len(y))
    rng = as_rng(seed)
    order = rng.permutation(classes)
    holders: dict[int, list[int]] = {int(k): [] for k in classes}
    position = 0
    for k in range(num_clients):
        chosen: list[int] = []
        while len(chosen) < classes_per_client:
            cls = int(order[position % c])
            position += 1
            if cls not in chosen:
                chosen.append(cls)
        for cls in chosen:
            holders[cls].append(k)
    owner = np.full(len(y), -1, dtype=np.int64)
    for cls, clients in holders.items():
        if not clients:
            continue
        members = rng.permutation(np.flatnonzero(y == cls))
        for part, k in zip(np.array_split(members, len(clients)), clients):
            owner[part] = k
    used = owner >= 0
    sizes = np.bincount(owner[used], minlength=num_clients)
    if sizes.min() == 0:
        raise ValueError(
            f"some client would get no samples (a class has fewer samples than clients holding "
            f"it); use fewer clients or more classes_per_client than {classes_per_client}"
        )
    indices = [rng.permutation(np.flatnonzero(owner == k)) for k in range(num_clients)]
    return Partition(
        indices,
        len(y),
        params=[
            record(
                "pathological",
                num_clients=num_clients,
                classes_per_client=classes_per_client,
                seed=_seed_repr(seed),
            )
        ],
    )


def quantity_skew(
    data, num_clients: int, sigma: float = 1.0, kind: str = "lognormal", min_size: int = 10, seed=0
) -> Partition:
    """Unequal client sizes with IID label mixes.

    ``kind="lognormal"``: sizes proportional to LogNormal(0, sigma) draws (FedLab's
    ``lognormal_unbalance_split``); ``kind="power"``: the k-th largest client is
    proportional to ``(k + 1) ** -sigma`` (a Zipf-like power law). ``sigma = 0`` gives equal
    sizes. Each client keeps at least ``min_size`` samples.
    """
    y = labels_of(data)
    if kind not in ("lognormal", "power"):
        raise ValueError(f"kind={kind!r} must be 'lognormal' or 'power'")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma={sigma} must be a finite number >= 0")
    num_clients = _check_clients(num_clients, len(y), min_size)
    rng = as_rng(seed)
    if kind == "lognormal":
        weights = rng.lognormal(0.0, sigma, size=num_clients)
    else:
        weights = rng.permutation((np.arange(num_clients) + 1.0) ** -sigma)
    spare = len(y) - num_clients * min_size
    sizes = min_size + _round_preserving(weights / weights.sum() * spare)
    cuts = np.cumsum(sizes)[:-1]
    indices = [p.astype(np.int64) for p in np.split(rng.permutation(len(y)), cuts)]
    return Partition(
        indices,
        len(y),
        params=[
            record(
                "quantity_skew",
                num_clients=num_clients,
                sigma=sigma,
                kind=kind,
                min_size=min_size,
                seed=_seed_repr(seed),
            )
        ],
    )


def _round_preserving(x: np.ndarray) -> np.ndarray:
    """Round non-negative reals to integers keeping the (integer) total."""
    floor = np.floor(x).astype(np.int64)
    short = int(round(x.sum())) - int(floor.sum())
    floor[np.argsort(floor - x)[:short]] += 1
    return floor
