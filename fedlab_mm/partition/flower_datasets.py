"""Flower Datasets, both ways: a kit :class:`~fedlab_mm.partition.Partition` as a
``flwr_datasets`` ``Partitioner``, and any ``flwr_datasets`` partitioner as a kit Partition.

- :func:`as_partitioner`: a Flower app loads exactly the kit's clients, their modality and
  label masks included as ``present_<modality>`` and ``labeled`` columns (and ``kit_index``,
  the row in the kit's data set);
- :func:`from_partitioner`: a Flower partitioner's split (``PathologicalPartitioner``,
  ``InnerDirichletPartitioner``, ...) as a kit Partition, so its clients get the kit's skew
  report, plots and overlays (missing modalities, scarce labels).

``flwr-datasets`` is in the ``flower`` extra (``make setup`` installs it). This module is not
imported by ``import fedlab_mm``: ``from fedlab_mm.partition import flower_datasets``.
"""

from __future__ import annotations

import numpy as np
from flwr_datasets.partitioner import Partitioner

from ..data import MultimodalDataset, to_hf
from .core import Partition, record

__all__ = ["KitPartitioner", "as_partitioner", "from_partitioner"]


class KitPartitioner(Partitioner):
    """A kit Partition of one data set, as a Flower Datasets partitioner.

    ``load_partition(k)`` is client ``k``'s rows as :meth:`Partition.client_dataset` gives
    them (masks and feature transforms applied), as a ``datasets.Dataset``
    (:func:`fedlab_mm.data.to_hf`) with a ``kit_index`` column."""

    def __init__(self, partition: Partition, dataset: MultimodalDataset) -> None:
        super().__init__()
        if not isinstance(partition, Partition):
            raise ValueError(f"partition must be a kit Partition, got {type(partition).__name__}")
        if not isinstance(dataset, MultimodalDataset) or len(dataset) != partition.n_total:
            raise ValueError(
                f"dataset must be the MultimodalDataset of {partition.n_total} rows the "
                "partition was made for"
            )
        self.partition, self.kit_dataset = partition, dataset
        self.dataset = to_hf(dataset)  # what Flower's FederatedDataset would hand over

    @property
    def num_partitions(self) -> int:
        return self.partition.num_clients

    def load_partition(self, partition_id: int):
        if not 0 <= int(partition_id) < self.num_partitions:
            raise ValueError(
                f"partition_id={partition_id!r} must be in 0..{self.num_partitions - 1}"
            )
        client = self.partition.client_dataset(self.kit_dataset, int(partition_id))
        rows = to_hf(client)
        return rows.add_column("kit_index", self.partition.indices[int(partition_id)].tolist())


def as_partitioner(partition: Partition, dataset: MultimodalDataset) -> KitPartitioner:
    """``partition`` of ``dataset`` as a Flower Datasets partitioner (:class:`KitPartitioner`)."""
    return KitPartitioner(partition, dataset)


def from_partitioner(partitioner: Partitioner, dataset: MultimodalDataset) -> Partition:
    """The split a Flower Datasets partitioner makes of ``dataset``, as a kit Partition.

    The partitioner gets ``dataset`` as a ``datasets.Dataset`` (:func:`fedlab_mm.data.to_hf`:
    its label column is ``label``, so ``partition_by="label"``) with a ``kit_index`` column,
    and each of its partitions becomes one client's indices. Overlays (missing modalities,
    scarce labels, feature skew) then apply as to any kit split.
    """
    if not isinstance(partitioner, Partitioner):
        raise ValueError(
            f"partitioner must be a flwr_datasets Partitioner, got {type(partitioner).__name__}"
        )
    if not isinstance(dataset, MultimodalDataset):
        raise ValueError(f"dataset must be a MultimodalDataset, got {type(dataset).__name__}")
    if not partitioner.is_dataset_assigned():  # a KitPartitioner already holds the kit's rows
        partitioner.dataset = to_hf(dataset).add_column("kit_index", list(range(len(dataset))))
    indices = []
    for k in range(partitioner.num_partitions):
        part = partitioner.load_partition(k)
        if "kit_index" not in part.column_names:
            raise ValueError(
                f"{type(partitioner).__name__} already holds a data set without the kit's "
                "kit_index column: pass a fresh partitioner, from_partitioner assigns the data"
            )
        rows = np.asarray(part["kit_index"], dtype=np.int64)
        if len(rows) == 0:
            raise ValueError(f"{type(partitioner).__name__} gave client {k} no rows")
        indices.append(rows)
    taken = np.concatenate(indices)
    if len(np.unique(taken)) != len(taken):
        raise ValueError(f"{type(partitioner).__name__} gave some rows to several clients")
    return Partition(
        indices,
        len(dataset),
        params=[record("flwr_datasets", partitioner=type(partitioner).__name__,
                       num_clients=len(indices))],
    )  # fmt: skip
