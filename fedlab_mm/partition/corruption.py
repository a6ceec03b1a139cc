"""Broken clients, for testing robust aggregation (notebook 06's CKA graph)."""

from __future__ import annotations

import dataclasses

import torch

from ..seed import as_rng

__all__ = ["CORRUPTIONS", "corrupt_clients"]

CORRUPTIONS = ("labels", "flip", "noise")


def corrupt_clients(
    clients: list, client_ids, kind: str = "labels", modality=None, noise=3.0, seed=0
) -> list:
    """Broken clients, for testing robust aggregation: a copy of ``clients`` where the
    clients in ``client_ids`` have their *training* data corrupted.

    ``kind="labels"``: their training labels are randomly permuted (the pairs of inputs and
    labels no longer match); ``kind="flip"``: every label ``c`` becomes ``c + 1`` (mod the
    number of classes), a consistent lie; ``kind="noise"``: Gaussian noise of std ``noise``
    times the modality's std is added to ``modality`` (default: every modality). Test splits
    stay clean.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind={kind!r} must be one of {CORRUPTIONS}")
    ids = {c.client_id for c in clients}
    bad = sorted(set(int(k) for k in client_ids) - ids)
    if bad:
        raise ValueError(f"client_ids {bad} are not among the clients {sorted(ids)}")
    rng = as_rng(seed)
    out = []
    for client in clients:
        if client.client_id not in set(int(k) for k in client_ids):
            out.append(client)
            continue
        train = client.train
        if kind == "labels":
            train = train.replace(y=train.y[torch.from_numpy(rng.permutation(len(train)))])
        elif kind == "flip":
            train = train.replace(y=(train.y + 1) % train.num_classes)
        else:
            names = train.names if modality is None else [modality]
            unknown = [m for m in names if m not in train.names]
            if unknown:
                raise ValueError(f"modality={modality!r} is not one of {train.names}")
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            xs = dict(train.modalities)
            for m in names:
                x = xs[m]
                xs[m] = x + noise * x.std() * torch.randn(x.shape, generator=gen).to(x.dtype)
            train = train.replace(modalities=xs)
        out.append(dataclasses.replace(client, train=train))
    return out
