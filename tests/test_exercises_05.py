"""Tested solutions of the exercises of notebook 05 (modality completion), at smoke scale.

At the notebook's smoke sizes (400 digits, 2 rounds) the completion sweep's models are still at
chance, whatever the strategy, so exercises 1 and 3 are checked on what the strategies fill in,
which is stable: a nearest-class-mean reader says whether a filled value shows the sample's
class. Exercise 2 uses the MCM + RAM section's own setting (tower view, Adam at 3e-3, 2 local
epochs, 3 rounds), where accuracy does move. The numbers in the comments are from seeds 0-4
(data, partition and run).
"""

import numpy as np
import pandas as pd
import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import completion as C
from fedlab_mm import mcm_ram as T
from fedlab_mm.federated import CrossEntropy, FedAvg, LocalTrainer, Simulation
from fedlab_mm.models import ModelSpec

N_SAMPLES = 400  # the notebook's smoke-mode sizes
ROUNDS = 2
NUM_CLIENTS = 10
MVP_ROUNDS, LAST = 3, 1
RATE = 0.8  # the missing rate of the notebook's MCM + RAM section and split sweep
IMAGE_TEXT = {"image": 0.5, "text": 0.5}  # clients_at's split at image_share=0.5


def world(modalities=("image", "text"), vague_fraction=0.1):
    """The notebook's data: the digits, a server test split and a Dirichlet 0.5 partition
    (vague_fraction=0.1 is the digits' default)."""
    ds = fm.data.digits(
        n_samples=N_SAMPLES,
        modalities=modalities,
        vague_fraction=vague_fraction,
        seed=0,
        progress=False,
    )
    rest, server_test = fm.partition.holdout(ds, 0.2, seed=0)
    base = fm.partition.dirichlet(rest, NUM_CLIENTS, alpha=0.5, seed=0)
    return ds, rest, server_test, base


def clients_at(data, rate, split=IMAGE_TEXT):
    """The notebook's `clients_at`, with the split as an argument."""
    ds, rest, _, base = data
    part = fm.partition.missing_modalities(base, ds, rate, split=split, seed=0)
    return part.clients(rest, seed=0)


def run(data, spec, clients, strategy):
    """The notebook's `run`: complete, train FedAvg, score the global model on the server's
    test set with every modality and with each one alone."""
    ds, _, server_test, _ = data
    trainer = LocalTrainer(optimizer="adam", lr=1e-3, max_grad_norm=5.0)
    sim = Simulation(
        C.complete(clients, strategy),
        spec,
        trainer,
        FedAvg(),
        seed=0,
        progress=False,
        eval_every=ROUNDS,
    )
    sim.run(ROUNDS)
    model = fm.models.build_model(spec)
    model.load_state_dict(sim.global_state)
    scores = C.views(model, server_test)
    scores["all"] = scores.pop("both")
    return scores


def class_hits(data, raw, filled, m):
    """Share of the filled values of modality ``m`` (training splits) that show the sample's
    class: the nearest class mean of the real values (every training sample, before any went
    missing) is the sample's label."""
    _, rest, _, _ = data
    real = rest.modalities[m].flatten(1)
    means = torch.stack([real[rest.y == c].mean(0) for c in range(rest.num_classes)])
    hits, count = 0, 0
    for before, after in zip(raw, filled):
        missing = ~before.train.present[:, before.train.names.index(m)]
        values = after.train.modalities[m][missing].flatten(1)
        nearest = torch.cdist(values, means).argmin(1)
        hits += int((nearest == before.train.y[missing]).sum())
        count += int(missing.sum())
    return hits / count


def test_exercise_1_three_modalities():
    """Use all three digits modalities (`fm.data.digits(modalities=("image", "audio",
    "text"))`). There is no frozen tower for audio, so build the spec without one, and let the
    missing share fall on all three modalities (`split=None`). Does completion matter more?"""
    two, three = world(), world(("image", "audio", "text"))
    with pytest.raises(ValueError, match="no frozen tower for 'audio'"):
        ModelSpec.from_dataset(three[0], d=64, hidden=128, unimodal=True, frozen_towers=True)
    spec = ModelSpec.from_dataset(three[0], d=64, hidden=128, unimodal=True)

    raw_two, raw_three = clients_at(two, RATE), clients_at(three, RATE, split=None)
    # With three modalities a sample that loses one keeps two; with two it keeps one.
    kept_two = torch.cat([c.train.present.sum(1) for c in raw_two])
    kept_three = torch.cat([c.train.present.sum(1) for c in raw_three])
    assert kept_two.min() == 1 and kept_three.min() == 2
    assert abs(float((kept_three == 2).float().mean()) - RATE) < 0.05

    # So there is more to complete from: two sources per missing value and more complete
    # pairs to fit the maps on. Regression then fills every missing value, and its fills show
    # the right class more often. Share of regression's fills that do, two modalities / three,
    # seeds 0-4: images 0.36 / 0.65, 0.42 / 0.66, 0.40 / 0.57, 0.36 / 0.48, 0.42 / 0.52;
    # captions 0.37 / 0.57, 0.38 / 0.60, 0.43 / 0.64, 0.36 / 0.58, 0.43 / 0.44 (its audio
    # fills: 0.21-0.40).
    filled_two = C.complete(raw_two, "regression")
    filled_three = C.complete(raw_three, "regression")
    assert all(bool(c.train.available.all()) for c in filled_three)
    settings = {2: (two, raw_two, filled_two), 3: (three, raw_three, filled_three)}
    image = {n: class_hits(*setting, "image") for n, setting in settings.items()}
    text = {n: class_hits(*setting, "text") for n, setting in settings.items()}
    assert image[3] > image[2] + 0.05
    assert (image[3] + text[3]) / 2 > (image[2] + text[2]) / 2 + 0.03

    # The sweep with the new spec, on the notebook's smoke strategies. Whether completion then
    # matters more for accuracy cannot be read at this scale: every run is near chance (server
    # test, all modalities, mask / regression, seeds 0-4: 0.11 / 0.11, 0.125 / 0.125,
    # 0.19 / 0.14, 0.21 / 0.14, 0.09 / 0.09), and so were the two-modality runs. The full
    # notebook run answers it. (Frozen, which speaks the missing words, is left out as in the
    # notebook's smoke sweep: its public models take several seconds to fit and load.)
    scores = {s: run(three, spec, raw_three, s) for s in ("mask", "regression")}
    for views in scores.values():
        assert set(views) == {"all", "image only", "audio only", "text only"}


def tower_clients():
    """The notebook's `tower_clients` at seed 0: 80% missing, no completion, images as
    frozen-tower features."""
    data = fm.data.digits(n_samples=N_SAMPLES, modalities=("image", "text"), seed=0, progress=False)
    train, test = fm.partition.holdout(data, 0.2, seed=0)
    part = fm.partition.dirichlet(train, NUM_CLIENTS, alpha=0.5, seed=0)
    part = fm.partition.missing_modalities(part, data, RATE, split=IMAGE_TEXT, seed=0)
    view = fm.hetero.tower_features
    clients = [
        fm.partition.ClientData(c.client_id, view(c.train), view(c.test))
        for c in part.clients(train, seed=0)
    ]
    return clients, view(test)


def mvp_run(clients, test, losses):
    """The notebook's `mvp_run` on FedMVP's model: the last round's global model on the
    server's test set, and how close its joint representation sits to the caption's
    unimodal one (mean cosine; both are unit vectors)."""
    spec = ModelSpec.from_dataset(clients[0].train, d=64, hidden=128, unimodal=True)
    spec = spec.replace(shared_encoder=True, residual_head=True, dropout=0.1)
    trainer = LocalTrainer(
        losses=[CrossEntropy(), *losses], optimizer="adam", lr=3e-3, epochs=2, max_grad_norm=5.0
    )
    sim = Simulation(clients, spec, trainer, FedAvg(), seed=0, progress=False, eval_every=1)
    sim.run(MVP_ROUNDS - LAST)
    views = []
    for _ in range(LAST):
        sim.run(1)
        model = fm.models.build_model(spec)
        model.load_state_dict(sim.global_state)
        views.append(fm.completion.views(model, test, labels={"text": "caption only"}))
    out = pd.DataFrame(views).mean().to_dict()
    with torch.no_grad():
        features = model.eval().features(test.modalities, test.available.float())
    out["joint~caption"] = float((features["joint"] * features["unimodal"]["text"]).sum(1).mean())
    return out


def test_exercise_2_mcm_weight():
    """Raise MCM's weight from FedMVP's 0.01 to 0.1 and 1. What happens to "caption only"?"""
    clients, test = tower_clients()
    runs = {w: mvp_run(clients, test, [T.MCM(w), T.RAM()]) for w in (0.01, 0.1, 1.0)}

    # MCM pulls the joint representation towards the caption's: mean cosine at weights 0.01,
    # 0.1, 1, seeds 0-4: 0.57 0.76 0.71 | 0.59 0.81 0.81 | 0.50 0.68 0.70 | 0.61 0.79 0.72 |
    # 0.62 0.79 0.65.
    cosine = {w: run["joint~caption"] for w, run in runs.items()}
    assert min(cosine[0.1], cosine[1.0]) > cosine[0.01] + 0.02
    # And it costs accuracy, more the higher the weight (both modalities: 0.350 0.200 0.113 |
    # 0.450 0.150 0.087 | 0.506 0.284 0.136 | 0.350 0.212 0.150 | 0.400 0.275 0.100).
    both = {w: run["both"] for w, run in runs.items()}
    assert both[0.01] > both[0.1] > both[1.0]
    assert both[0.01] - both[1.0] > 0.15
    # "Caption only" does not gain: at this scale the model has barely learnt the captions
    # (0.100 0.100 0.100 | 0.125 0.125 0.125 | 0.198 0.123 0.086 | 0.100 0.100 0.100 |
    # 0.163 0.113 0.100), and a higher weight never raised it.
    caption = {w: run["caption only"] for w, run in runs.items()}
    assert caption[1.0] <= caption[0.1] <= caption[0.01]


def test_exercise_3_vague_captions():
    """Make the captions less informative (`fm.data.digits(vague_fraction=0.5)`). Which
    strategy suffers most?"""
    clear, vague = world(), world(vague_fraction=0.5)
    # About half of the captions now name no digit (0.48-0.55 on seeds 0-4, 0.10-0.11 before).
    share = np.isin(vague[0].meta["caption"], fm.data.captions.VAGUE_TEMPLATES).mean()
    assert abs(share - 0.5) < 0.07
    # Only the captions change: the same images and labels, so the same partition and the same
    # missing modalities.
    assert torch.equal(clear[0].modalities["image"], vague[0].modalities["image"])
    assert torch.equal(clear[0].y, vague[0].y)
    raw_clear, raw_vague = clients_at(clear, RATE), clients_at(vague, RATE)
    for a, b in zip(raw_clear, raw_vague):
        assert torch.equal(a.train.present, b.train.present)

    # Read with the nearest class mean, the real captions of the server's test set lose half
    # their class information (0.96 -> 0.49, 0.85 -> 0.44, 0.96 -> 0.59, 0.89 -> 0.44,
    # 0.86 -> 0.50).
    def caption_hits(data):
        _, rest, server_test, _ = data
        real = rest.modalities["text"]
        means = torch.stack([real[rest.y == c].mean(0) for c in range(10)])
        nearest = torch.cdist(server_test.modalities["text"], means).argmin(1)
        return float((nearest == server_test.y).float().mean())

    assert caption_hits(vague) < caption_hits(clear) - 0.25

    fills = {
        name: (C.complete(raw_clear, name), C.complete(raw_vague, name))
        for name in ("mask", "mean", "knn", "regression")
    }
    # Masking fills nothing, and the client's mean image does not read the captions: both
    # give exactly the same training data as before.
    for before, after in zip(*fills["mask"]):
        assert not before.train.filled.any() and not after.train.filled.any()
    for before, after in zip(*fills["mean"]):
        assert torch.equal(before.train.modalities["image"], after.train.modalities["image"])
    # The strategies that draw a missing image from the caption suffer: their image fills
    # show the right class less often (clear -> vague, seeds 0-4: regression 0.36 -> 0.28,
    # 0.42 -> 0.32, 0.40 -> 0.25, 0.36 -> 0.24, 0.42 -> 0.24; nearest neighbours 0.28 -> 0.28,
    # 0.34 -> 0.28, 0.25 -> 0.22, 0.24 -> 0.20, 0.24 -> 0.20). Regression, which fills best
    # from clear captions, loses most. (The sweep's accuracies are at chance at this scale.)
    hits = {
        name: (
            class_hits(clear, raw_clear, fills[name][0], "image"),
            class_hits(vague, raw_vague, fills[name][1], "image"),
        )
        for name in ("knn", "regression")
    }
    assert hits["regression"][1] < hits["regression"][0] - 0.05
    assert hits["knn"][1] <= hits["knn"][0]
    loss = {name: before - after for name, (before, after) in hits.items()}
    assert loss["regression"] > loss["knn"]
