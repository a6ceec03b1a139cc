"""Flower Datasets both ways (issue 24): kit -> Flower -> kit and Flower -> kit -> Flower."""

import numpy as np
import pytest
import torch

import fedlab_mm as fm

pytest.importorskip("flwr_datasets")
from flwr_datasets.partitioner import (  # noqa: E402
    InnerDirichletPartitioner,
    PathologicalPartitioner,
)

from fedlab_mm.partition import flower_datasets as FD  # noqa: E402

DS = fm.data.synthetic(n_samples=200, dims={"image": 6, "text": 4}, seed=0)


def test_a_kit_partition_round_trips_through_flower():
    part = fm.partition.dirichlet(DS, 5, alpha=0.5, seed=0)
    part = fm.partition.missing_modalities(part, DS, 0.4, seed=0)
    flower = FD.as_partitioner(part, DS)
    assert flower.num_partitions == 5
    rows = flower.load_partition(2)
    assert rows["kit_index"] == part.indices[2].tolist()
    client = part.client_dataset(DS, 2)  # the masks travel as columns
    assert rows["present_image"] == client.present[:, 0].tolist()
    assert not all(rows["present_image"]) or not all(rows["present_text"])
    back = FD.from_partitioner(FD.as_partitioner(part, DS), DS)
    assert all(np.array_equal(a, b) for a, b in zip(back.indices, part.indices))
    with pytest.raises(ValueError, match="partition_id=5 must be in 0..4"):
        flower.load_partition(5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PathologicalPartitioner(4, partition_by="label", num_classes_per_partition=2,
                                        seed=0),
        lambda: InnerDirichletPartitioner([50] * 4, partition_by="label", alpha=0.5, seed=0),
    ],
)  # fmt: skip
def test_a_flower_partitioner_becomes_a_kit_partition_and_back(make):
    part = FD.from_partitioner(make(), DS)
    reference = make()
    reference.dataset = fm.data.to_hf(DS).add_column("kit_index", list(range(len(DS))))
    for k in range(part.num_clients):  # the same rows as Flower's own split
        assert part.indices[k].tolist() == reference.load_partition(k)["kit_index"]
    again = FD.from_partitioner(FD.as_partitioner(part, DS), DS)
    assert all(np.array_equal(a, b) for a, b in zip(again.indices, part.indices))
    report = fm.partition.skew.report(part, DS)  # the kit's tools now apply
    assert len(report) == part.num_clients
    scarce = fm.partition.scarce_labels(part, 0.5, seed=0)
    assert 0 < float(torch.cat([c.train.labeled for c in scarce.clients(DS)]).float().mean()) < 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="partitioner must be a flwr_datasets Partitioner"):
        FD.from_partitioner(object(), DS)
    with pytest.raises(ValueError, match="the MultimodalDataset of 200 rows"):
        FD.as_partitioner(fm.partition.iid(DS, 2), DS.subset(slice(0, 10)))
