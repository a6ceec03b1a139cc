import time

import pytest
import torch
import torch.nn.functional as F

import fedlab_mm as fm
from fedlab_mm import broadcast as B
from fedlab_mm import federated as E
from fedlab_mm.models import lora
from tests.known import assert_matches_a_record

SPEC = fm.mini_clip.BroadcastSpec()
DIGITS = fm.data.digits(600, modalities=("image",), progress=False)
STEMS = fm.mini_clip.stem_features(DIGITS)


def small_clients(seed=0, n=3, alpha=0.5):
    rest, test = fm.partition.holdout(STEMS, 0.2, seed=seed)
    return fm.partition.dirichlet(rest, n, alpha=alpha, seed=seed).clients(rest, seed=seed), test


# --------------------------------------------------------------------------- anchors and text
def test_anchors_are_unit_norm_and_one_per_class():
    anchors = fm.mini_clip.class_anchors()
    assert anchors.shape == (10, 384)
    torch.testing.assert_close(anchors.norm(dim=1), torch.ones(10))
    # each class's anchor is nearest to a prompt about that class
    probe = fm.data.captions.embed([f"a handwritten {w}" for w in SPEC.classes])
    assert (probe @ anchors.T).argmax(1).tolist() == list(range(10))


def test_the_text_encoder_loads_from_the_package_and_a_hub_name_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert fm.data.captions.encoder_path().is_dir()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        fm.mini_clip.TextAnchors(SPEC.classes, path="sentence-transformers/all-MiniLM-L6-v2")
    assert time.perf_counter() - start < 1.0


def test_text_tuning_moves_anchors_toward_features_and_renormalises():
    text = fm.mini_clip.TextAnchors(SPEC.classes[:3], rank=2)
    before = text.anchors()
    feats = F.normalize(torch.randn(30, 384, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.arange(3).repeat(10)
    loss = lambda a: F.cross_entropy(feats @ a.T / 0.05, labels)  # noqa: E731
    after = text.tune(feats, labels, steps=3, lr=1e-2)
    torch.testing.assert_close(after.norm(dim=1), torch.ones(3))
    assert float(loss(after)) < float(loss(before))
    with pytest.raises(ValueError, match="rank=0"):
        fm.mini_clip.TextAnchors(SPEC.classes[:3]).tune(feats, labels)


# --------------------------------------------------------------------------- the client model
def test_a_fresh_lora_model_equals_the_pretrained_encoder():
    lora_net, full_net = SPEC.build(), SPEC.replace(adapt="full").build()
    x = {"image": DIGITS.modalities["image"][:20]}
    torch.testing.assert_close(lora_net(x), full_net(x))
    # precomputed stem features give the same logits as raw images
    torch.testing.assert_close(lora_net({"image": STEMS.modalities["image"][:20]}), lora_net(x))
    trainable = [n for n, p in lora_net.named_parameters() if p.requires_grad]
    assert trainable and all(lora.is_adapter(n) for n in trainable)
    assert lora_net.adapted == ["encoder.0", "encoder.2"]
    assert not any(k.startswith("_stem") or "stem" in k for k in lora_net.state_dict())


def test_bad_specs_and_inputs_are_refused():
    with pytest.raises(ValueError, match="rank"):
        fm.mini_clip.BroadcastSpec(rank=0)
    with pytest.raises(ValueError, match="ten digits"):
        fm.mini_clip.BroadcastSpec(classes=("cat", "dog"))
    with pytest.raises(ValueError, match="adapt"):
        fm.mini_clip.BroadcastSpec(adapt="half")
    with pytest.raises(ValueError, match="tau"):
        fm.mini_clip.BroadcastSpec(tau=0)
    with pytest.raises(ValueError, match="per-sample shape"):
        SPEC.build()({"image": torch.zeros(2, 10)})
    with pytest.raises(ValueError, match="stem_features needs"):
        fm.mini_clip.stem_features(STEMS)
    with pytest.raises(ValueError, match="adapt='lora'"):
        B.FedAlign(SPEC.replace(adapt="full"))
    with pytest.raises(ValueError, match="high_layers"):
        E.simulate(small_clients()[0], SPEC, B.fedalign().trainer, B.FedAlign(SPEC, 3), rounds=1)


def test_orthogonality_is_zero_for_orthogonal_classes_and_never_negative():
    v, y = torch.eye(4, 8), torch.tensor([0, 1, 2, 3])
    assert float(fm.losses.orthogonality(v, y)) == 0.0
    same = torch.ones(4, 8)
    assert float(fm.losses.orthogonality(same, y)) == pytest.approx(1.0)
    assert (
        float(fm.losses.orthogonality(same, torch.zeros(4, dtype=torch.long))) == 0.0
    )  # one class
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(16, 8, generator=gen)
        assert float(fm.losses.orthogonality(x, torch.randint(0, 3, (16,), generator=gen))) >= 0.0


# --------------------------------------------------------------------------- query weights
def test_query_weights_rows_sum_to_one_and_are_uniform_for_identical_prototypes():
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 10, 16, generator=gen)
    counts = torch.randint(0, 5, (4, 10), generator=gen)
    w = B.query_weights(protos, counts)
    torch.testing.assert_close(w.sum(1), torch.ones(4, dtype=w.dtype))
    assert (w >= 0).all()
    same = protos[:1].expand(4, 10, 16)
    uniform = torch.full((4, 4), 0.25, dtype=w.dtype)
    torch.testing.assert_close(B.query_weights(same, torch.ones(4, 10)), uniform)


def test_ex_query_gives_the_client_itself_weight_zero():
    gen = torch.Generator().manual_seed(1)
    protos, counts = torch.randn(5, 10, 8, generator=gen), torch.ones(5, 10)
    w = B.query_weights(protos, counts, ex_query=True)
    assert torch.diagonal(w).abs().max() == 0
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=w.dtype))
    assert float(B.query_weights(protos[:1], counts[:1], ex_query=True)) == 1.0  # a lone client


def test_a_client_is_mixed_mostly_with_clients_like_it():
    # clients 0 and 1 hold classes 0-4 and embed them alike; client 2 holds 5-9
    gen = torch.Generator().manual_seed(2)
    protos = F.normalize(torch.randn(1, 10, 8, generator=gen).expand(3, 10, 8).clone(), dim=-1)
    protos[1] += 0.05 * torch.randn(10, 8, generator=gen)
    counts = torch.zeros(3, 10)
    counts[:2, :5], counts[2, 5:] = 10, 10
    w = B.query_weights(protos, counts)
    assert w[0, 1] > 0.45 and w[0, 2] < 0.01
    with pytest.raises(ValueError, match="disagree"):
        B.query_weights(protos, counts[:, :5])


# --------------------------------------------------------------------------- the protocol
def test_only_adapters_prototypes_and_anchors_travel():
    clients, test = small_clients()
    recipe = B.fedalign(epochs=1)
    sim = E.Simulation(clients, recipe.spec, recipe.trainer, recipe.strategy, progress=False)
    sent = {}
    fit = E.Client.fit

    def spy(self, received, rnd, seed, extra=()):
        update = fit(self, received, rnd, seed, extra)
        sent[self.client_id] = (set(received), update)
        return update

    E.Client.fit = spy
    try:
        sim.run(1)
    finally:
        E.Client.fit = fit
    adapters = {k for k in sim.global_state if lora.is_adapter(k)}
    assert len(adapters) == 4  # A and B of the two adapted layers
    for received, update in sent.values():
        assert received == adapters | {"anchors"}
        assert set(update.state) == adapters
        assert set(update.payload) == {"prototypes", "counts"}
        assert update.payload["prototypes"].shape == (10, 384)
    rows = sim.history.df.query("split == 'system' and metric == 'bytes_up'")
    expected = sum(E.state_bytes(u.state) + E.state_bytes(u.payload) for _, u in sent.values())
    assert int(rows.value.iloc[0]) == expected
    assert sim.history.kilobytes()["uplink"] == pytest.approx(expected / len(sent) / 1e3)
    # the personal high adapters differ between clients, the low ones are shared
    m0, m1 = (
        recipe.strategy.message(0, sim.global_state),
        recipe.strategy.message(1, sim.global_state),
    )
    low = [k for k in adapters if lora.layer_of(k) == "encoder.0"]
    high = [k for k in adapters if lora.layer_of(k) == "encoder.2"]
    assert all(torch.equal(m0[k], m1[k]) for k in low)
    assert not all(torch.equal(m0[k], m1[k]) for k in high)


def test_feature_uploads_are_correctly_classified_vectors():
    clients, _ = small_clients()
    recipe = B.fedalign(share_features=True)
    client = E.Client(clients[0], recipe.spec, recipe.trainer)
    payload = recipe.trainer.payload(client)
    f, y = payload["features"], payload["feature_labels"]
    assert f.shape[1] == 384 and len(f) == len(y) > 0
    logits = f @ client.model.anchors.T
    assert torch.equal(logits.argmax(1), y)


def test_a_fedalign_run_resumes_exactly(tmp_path):
    clients, test = small_clients()

    def fresh():
        return B.fedalign(text_steps=1)

    r = fresh()
    whole = E.Simulation(clients, r.spec, r.trainer, r.strategy, global_test=test, progress=False)
    whole.run(3)
    r = fresh()
    first = E.Simulation(clients, r.spec, r.trainer, r.strategy, global_test=test, progress=False)
    first.run(2)
    first.save(tmp_path / "run")
    r = fresh()
    again = E.Simulation.resume(
        tmp_path / "run", clients, r.spec, r.trainer, r.strategy, test, False
    )
    again.run(1)
    assert again.history == whole.history


def test_local_only_trains_each_clients_own_adapters_and_sends_nothing():
    clients, test = small_clients()
    recipe = B.local_only()
    assert isinstance(recipe.strategy, E.LocalOnly) and not recipe.strategy.communicates
    sim = E.Simulation(clients, *recipe, global_test=test, progress=False)
    history = sim.run(2)
    assert history.kilobytes() == {"uplink": 0.0, "downlink": 0.0}
    assert set(history.df.split) == {"personal", "personal_init", "train", "system"}
    # the same client side as FedAlign: only the adapters train, and each client keeps its own
    adapters = [k for k in sim.global_state if lora.is_adapter(k)]
    first, second = (sim.served_model(c.client_id).state_dict() for c in sim.clients[:2])
    assert not any(torch.equal(first[k], second[k]) for k in adapters)
    own = sim.clients[0].model.state_dict()
    assert all(torch.equal(first[k], own[k]) for k in first)
    with pytest.raises(ValueError, match="ex_query"):
        B.local_only(ex_query=True)


def test_never_held_is_nan_when_every_client_holds_every_class():
    clients, test = small_clients(n=2, alpha=1000.0)
    assert all(len(set(c.train.y.tolist())) == 10 for c in clients)
    sim = E.Simulation(clients, *B.fedalign(), progress=False)
    assert B.never_held(sim, test) != B.never_held(sim, test)  # NaN


# --------------------------------------------------------------------------- effects, measured
# Digits (5,000 MNIST images; 1,000 held out), 10 Dirichlet clients, 10 rounds, one thread.
@pytest.fixture(scope="module")
def digits_stems():
    return fm.mini_clip.stem_features(fm.data.digits(5000, modalities=("image",), progress=False))


def federation(stems, alpha, seed=0):
    rest, test = fm.partition.holdout(stems, 0.2, seed=seed)
    return fm.partition.dirichlet(rest, 10, alpha=alpha, seed=seed).clients(rest, seed=seed), test


def run(recipe, clients, test, seed=0):
    sim = E.Simulation(clients, recipe.spec, recipe.trainer, recipe.strategy, seed=seed,
                       global_test=test, progress=False, eval_every=10)  # fmt: skip
    history = sim.run(10)
    return sim, history.final("accuracy", "global"), history.kilobytes()["uplink"]


def test_fedalign_is_as_accurate_as_full_fedavg_at_a_tenth_of_the_uplink(digits_stems, one_thread):
    clients, test = federation(digits_stems, alpha=0.5)
    _, lora_acc, lora_up = run(B.fedalign(), clients, test)
    _, full_acc, full_up = run(B.full_fedavg(), clients, test)
    # each client's served model on its own test split, seeds 0-2: FedAlign 0.931/0.922/0.936,
    # full FedAvg 0.930/0.927/0.943; uplink 48.7 KB vs 501.5 KB per client and round
    assert lora_acc >= full_acc - 0.03
    assert lora_acc > 0.85  # the pretrained encoder alone: 0.51
    assert lora_up < 0.1 * full_up


def test_a_seen_class_softmax_keeps_the_classes_a_client_never_saw(digits_stems, one_thread):
    clients, test = federation(digits_stems, alpha=0.1)

    def unseen_accuracy(recipe):
        sim, _, _ = run(recipe, clients, test)
        scores = []
        for c in clients:
            unseen = sorted(set(range(10)) - set(c.train.y.tolist()))
            if unseen:
                acc = E.per_class_accuracy(sim.served_model(c.client_id), test)
                scores.append(float(acc[unseen].mean()))
        assert B.never_held(sim, test) == pytest.approx(sum(scores) / len(scores))
        return sum(scores) / len(scores)

    plain, seen_only = (
        unseen_accuracy(B.fedalign()),
        unseen_accuracy(B.fedalign(seen_classes_only=True)),
    )
    # mean over clients of the served model's accuracy on its unseen classes (chance 0.1),
    # seeds 0-2: plain cross-entropy 0.304/0.236/0.107, seen-class softmax 0.592/0.467/0.490
    assert seen_only > 0.3
    assert seen_only > plain + 0.15


def test_the_readme_table_script_runs_in_quick_mode():
    from benchmarks import broadcast as bench

    out = bench.main(["--quick"])
    lines = out.splitlines()
    assert lines[0].startswith("| Dirichlet alpha | method | served | after local epoch")
    # The quick run's numbers (1 seed, 2 rounds averaged, 1,000 digits), measured when
    # written: served, after local epoch, server test, never held, uplink KB, downlink KB.
    # Deterministic on one CPU; 0.03 allows a few test samples either way, the traffic is
    # exact. One record per CPU measured (tests/known.py): across CPUs rounding alone moved
    # FedAlign's server test by 0.037. Local-only LoRA has no server: no served model, no
    # server test, no traffic.
    nan = float("nan")
    known = {
        "FedAlign": {"A": [0.633, 0.654, 0.619, 0.397], "B": [0.622, 0.637, 0.582, 0.366]},
        "local-only LoRA (no communication)": {"A": [nan, 0.643, nan, 0.283],
                                               "B": [nan, 0.596, nan, 0.273]},
        "full FedAvg": {"A": [0.637, 0.737, 0.664, 0.595], "B": [0.610, 0.718, 0.647, 0.585]},
    }  # fmt: skip
    traffic = {"FedAlign": [48.7, 48.6], "local-only LoRA (no communication)": [0.0, 0.0],
               "full FedAvg": [501.5, 516.9]}  # fmt: skip
    assert len(lines) == 5  # one seed: no paired differences
    for line, (name, values) in zip(lines[2:], known.items()):
        cells = line.strip("| ").split(" | ")
        assert cells[:2] == ["0.5", name]
        numbers = [nan if v == "-" else float(v) for v in cells[2:]]
        assert_matches_a_record(name, numbers[:4], values, tol=0.03)
        assert numbers[4:] == pytest.approx(traffic[name], abs=0.05), name
