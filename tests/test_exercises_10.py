"""Tested solutions of the exercises of notebook 10 (your own data), at small scale.

The notebook's data set, shrunk: 240 digits as a `datasets.Dataset` of PIL images, caption
strings (or None) and a ClassLabel; the audio column is left out (no exercise reads it).
"""

import numpy as np
import pytest
import torch

import fedlab_mm as fm

datasets = pytest.importorskip("datasets")
pytest.importorskip("flwr_datasets")
from flwr_datasets.partitioner import (  # noqa: E402
    InnerDirichletPartitioner,
    PathologicalPartitioner,
)
from PIL import Image  # noqa: E402

from fedlab_mm.federated import Simulation  # noqa: E402
from fedlab_mm.partition import flower_datasets  # noqa: E402

N = 240
DIGITS = fm.data.digits(N, modalities=("image", "text"), progress=False)


def user_dataset(caption_missing: float = 0.1, seed: int = 0):
    """The notebook's `datasets.Dataset` (no audio): a share of the captions are None."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8))
              for x in DIGITS.modalities["image"]]  # fmt: skip
    captions = [str(c) for c in DIGITS.meta["caption"]]
    for i in rng.permutation(N)[: int(caption_missing * N)]:
        captions[i] = None
    features = datasets.Features({
        "image": datasets.Image(), "caption": datasets.Value("string"),
        "digit": datasets.ClassLabel(names=list(DIGITS.classes)),
    })  # fmt: skip
    rows = {"image": images, "caption": captions, "digit": DIGITS.y.tolist()}
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return fm.towers.tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_exercise_1_a_pathological_split_from_flower():
    """Split with `PathologicalPartitioner(num_partitions=6, partition_by="label",
    num_classes_per_partition=2, seed=0)`. How many classes does each client hold, which
    classes does no client hold (and why must some be left out?), and how do the skew
    numbers compare with the InnerDirichlet split's?"""
    ds = fm.data.from_hf(user_dataset(), label="digit", image="image", text="caption",
                         progress=False)  # fmt: skip
    sizes = [N // 6] * 6
    pathological = flower_datasets.from_partitioner(
        PathologicalPartitioner(6, partition_by="label", num_classes_per_partition=2, seed=0), ds
    )
    dirichlet = flower_datasets.from_partitioner(
        InnerDirichletPartitioner(sizes, partition_by="label", alpha=0.5, seed=0), ds
    )
    report = fm.partition.skew.report(pathological, ds)
    # every client holds exactly the two classes it was dealt; 6 clients x 2 classes are 12
    # slots drawn at random over 10 classes, so some classes get none (here 1, 5 and 8, and
    # Flower warns about them) and their rows belong to no client
    assert (report["classes"] == 2).all()
    held = {int(c) for i in range(6) for c in ds.y[pathological.indices[i]].unique()}
    assert held == set(range(10)) - {1, 5, 8}
    assert pathological.sizes.sum() == sum(int((ds.y == c).sum()) for c in held) < N
    skewed, mixed = (fm.partition.skew.summary(p, ds) for p in (pathological, dirichlet))
    # two classes a client is as far from the global label mix as a split gets; the
    # Dirichlet split at alpha 0.5 holds more classes per client
    assert report["classes"].max() < fm.partition.skew.report(dirichlet, ds)["classes"].max()
    assert skewed["effective_classes"] < mixed["effective_classes"]
    assert skewed["hellinger"] > mixed["hellinger"]


def test_exercise_2_half_the_captions_missing(folder):
    """Take half of the captions away before `from_hf`. How many captions does
    `Frozen(tower=folder)` fill now? Can a row of `pairs` miss both its image and its
    caption?"""
    hf = user_dataset(caption_missing=0.5)
    pairs = fm.data.from_hf(hf, label="digit", image="image", text="caption", progress=False)
    texts = [c or "" for c in hf["caption"]]
    featured = fm.towers.HFTower(folder, "text").featurize(
        fm.towers.HFTower(folder, "image").featurize(pairs, cache=False), texts=texts,
        cache=False)  # fmt: skip
    t = featured.names.index("text")
    assert int((~featured.present[:, t]).sum()) == N // 2
    rest, _ = fm.partition.holdout(featured, 0.2, seed=0)
    clients = fm.partition.iid(rest, 4, seed=0).clients(rest, seed=0)
    completed = fm.completion.complete(clients, fm.completion.Frozen(tower=folder))
    # every image is there, so every missing caption is filled: no row misses both here
    for before, after in zip(clients, completed):
        missing = ~before.train.present[:, t]
        assert torch.equal(after.train.filled[:, t], missing)
        assert before.train.present[:, featured.names.index("image")].all()
    filled = sum(int(c.train.filled[:, t].sum()) for c in completed)
    assert filled == sum(int((~c.train.present[:, t]).sum()) for c in clients) > 0
    # a row with neither image nor caption carries nothing: from_hf refuses it, by name
    first_gone = hf["caption"].index(None)
    hole = hf.map(lambda row, i: {"image": None} if i == first_gone else {}, with_indices=True)
    with pytest.raises(ValueError, match=rf"rows \[{first_gone}\] have no modality at all"):
        fm.data.from_hf(hole, label="digit", image="image", text="caption", progress=False,
                        cache=False)  # fmt: skip


def test_exercise_3_rank_8_adapters_double_the_adapter_uplink(folder):
    """Give FedAlign's adapters rank 8 instead of 4. How does the uplink change, and why?"""
    images = fm.data.from_hf(user_dataset(), label="digit", image="image", image_size=28,
                             progress=False)  # fmt: skip
    rest, test = fm.partition.holdout(images, 0.2, seed=0)
    clients = fm.partition.dirichlet(rest, 4, alpha=0.5, seed=0).clients(rest, seed=0)
    uplink, adapter_kb = {}, {}
    for rank in (4, 8):
        spec = fm.mini_clip.BroadcastSpec(classes=images.classes, tower=str(folder), rank=rank)
        recipe = fm.broadcast.fedalign(spec)
        history = Simulation(clients, *recipe, global_test=test, progress=False).run(1)
        uplink[rank] = history.kilobytes()["uplink"]
        state = spec.build().state_dict()
        adapter_kb[rank] = fm.federated.state_bytes(
            {k: v for k, v in state.items() if fm.models.lora.is_adapter(k)}) / 1e3  # fmt: skip
    # A (r x 32) and B (32 x r) in 4 layers, float32: 4 * 64 r * 4 bytes, so the adapters'
    # bytes exactly double; the prototypes (10 x 16) and counts (10) do not depend on the rank,
    # so the uplink does not double: 4,096 + 640 + 40 bytes at rank 4, 8,192 + 680 at rank 8
    assert adapter_kb == {4: 4.096, 8: 8.192}
    assert uplink[4] == pytest.approx(4.776) and uplink[8] == pytest.approx(8.872)
