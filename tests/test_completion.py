import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import completion as C
from fedlab_mm import mcm_ram as T
from fedlab_mm.federated import evaluate
from fedlab_mm.models import ModelSpec, build_model

DS = fm.data.synthetic(n_samples=600, seed=0)


def masked(ds, rate=0.5, seed=0):
    """``ds`` with one modality missing (and zeroed) in a ``rate`` share of samples."""
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(len(ds), ds.M, dtype=torch.bool)
    miss = torch.rand(len(ds), generator=g) < rate
    which = torch.randint(0, ds.M, (len(ds),), generator=g)
    present[miss, which[miss]] = False
    zeroed = {
        m: x * present[:, j].reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        for j, (m, x) in enumerate(ds.modalities.items())
    }
    return ds.replace(present=present, modalities=zeroed)


@pytest.mark.parametrize("strategy", sorted(set(C.STRATEGIES) - {"frozen"}))
def test_completion_fills_only_missing_values_and_keeps_shapes(strategy):
    data = masked(DS)
    out = C.make(strategy).fit(data).transform(data)
    assert torch.equal(out.present, data.present)  # present keeps saying what is real
    assert not (out.filled & out.present).any()
    for j, m in enumerate(DS.names):
        x, y = data.modalities[m], out.modalities[m]
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.equal(y[data.present[:, j]], x[data.present[:, j]])
    if strategy == "mask":
        assert not out.filled.any()
    else:
        assert torch.equal(out.filled, ~data.present)
        assert torch.equal(out.available, torch.ones_like(out.present))


def test_better_strategies_predict_the_missing_values_better():
    # Normalised MSE against the true values (synthetic data, 600 samples, 50% missing one
    # modality); measured with data and mask seeds 0/1/2/3: mean 0.95/0.98/0.87/0.95,
    # knn 0.40/0.43/0.39/0.39, regression 0.32/0.32/0.30/0.31.
    data = masked(DS)
    errors = {}
    for strategy in ("mean", "knn", "regression"):
        out = C.make(strategy).fit(data).transform(data)
        miss = ~data.present
        errors[strategy] = (
            sum(
                float((out.modalities[m][miss[:, j]] - DS.modalities[m][miss[:, j]]).pow(2).mean())
                / float(DS.modalities[m].var())
                for j, m in enumerate(DS.names)
            )
            / DS.M
        )
    assert errors["mean"] > 0.8
    assert errors["regression"] < errors["knn"] < 0.6


def test_mean_of_a_client_without_the_modality_stays_masked_and_warns():
    part = fm.partition.iid(DS, 3, seed=0)
    part = fm.partition.missing_modalities(part, DS, absent={"audio": [1]}, seed=0)
    clients = part.clients(DS, seed=0)
    with pytest.warns(UserWarning, match="client 1 has no sample with modality 'audio'"):
        out = C.complete(clients, "mean")
    assert not out[1].train.filled[:, 1].any() and not out[1].train.available[:, 1].any()
    assert out[1].train.filled[:, [0, 2]].sum() == 0  # nothing else was missing


def test_completion_is_deterministic_and_checks_its_arguments():
    data = masked(DS, seed=3)
    a = C.make("knn").fit(data).transform(data)
    b = C.make(C.KNN()).fit(data).transform(data)
    assert all(torch.equal(a.modalities[m], b.modalities[m]) for m in DS.names)
    with pytest.raises(ValueError, match="strategy='gan'"):
        C.make("gan")
    with pytest.raises(ValueError, match="k=0"):
        C.KNN(k=0)
    with pytest.raises(ValueError, match="alpha"):
        C.Regression(alpha=0)
    with pytest.raises(RuntimeError, match="fit"):
        C.Mean().transform(data)


def test_missing_rate_one_for_every_modality_is_rejected():
    part = fm.partition.iid(DS, 3, seed=0)
    with pytest.raises(ValueError, match="removes every modality"):
        fm.partition.missing_modalities(part, DS, {"image": 1.0, "audio": 1.0, "text": 1.0})


def test_filled_is_checked_and_subset_keeps_it():
    data = C.make("mean").fit(masked(DS)).transform(masked(DS))
    sub = data.subset([0, 1, 2])
    assert torch.equal(sub.filled, data.filled[:3])
    with pytest.raises(ValueError, match="only missing values"):
        DS.replace(filled=torch.ones(len(DS), DS.M, dtype=torch.bool))
    assert "filled" in repr(data)


def test_single_modality_evaluation():
    model = build_model(ModelSpec.from_dataset(DS, d=16), seed=0)
    full = evaluate(model, DS)
    image_only = evaluate(model, DS, only="image")
    assert set(full) == set(image_only) == {"accuracy", "loss"}
    data = masked(DS, rate=1.0)  # every sample misses one modality
    n_with_image = int(data.present[:, 0].sum())
    assert n_with_image < len(DS)
    one = evaluate(model, data, only=["image"])
    manual = evaluate(
        model,
        data.subset(data.present[:, 0]).replace(
            present=data.present[data.present[:, 0]] & torch.tensor([True, False, False])
        ),
    )
    assert one == pytest.approx(manual)
    with pytest.raises(ValueError, match="only="):
        evaluate(model, DS, only="video")


# ------------------------------------------------------------------ MCM and RAM
UNI = ModelSpec.from_dataset(DS, d=16, hidden=32, unimodal=True)


def _batch(model, ds, labeled=None, n=32):
    x = {m: t[:n] for m, t in ds.modalities.items()}
    feats = model.features(x, ds.available[:n].float())
    labeled = torch.ones(n, dtype=torch.bool) if labeled is None else labeled
    return fm.losses.Batch(
        model, x, feats["present"], ds.y[:n], labeled, feats["logits"], {}, {}, feats
    )


def test_nt_xent_reference_points():
    import math

    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(32, 512, generator=gen), torch.randn(32, 512, generator=gen)
    assert fm.losses.nt_xent(u, v, tau=1.0).item() == pytest.approx(math.log(63), rel=0.05)
    same = torch.eye(32)
    assert fm.losses.nt_xent(same, same, tau=0.05).item() < 1e-3
    torch.testing.assert_close(fm.losses.nt_xent(u, v), fm.losses.nt_xent(v, u))
    with pytest.raises(ValueError, match="tau"):
        fm.losses.nt_xent(u, v, tau=0)


def test_unimodal_representations_are_unit_vectors_of_the_joint_width():
    model = build_model(UNI, seed=0)
    feats = model.features({m: x[:8] for m, x in DS.modalities.items()})
    for z in feats["unimodal"].values():
        assert z.shape == feats["joint"].shape
        torch.testing.assert_close(z.norm(dim=1), torch.ones(8))
    assert (
        build_model(ModelSpec.from_dataset(DS, d=16)).features(
            {m: x[:8] for m, x in DS.modalities.items()}
        )["unimodal"]
        == {}
    )


def test_mcm_and_ram_are_finite_and_need_unimodal_representations():
    model = build_model(UNI, seed=0)
    batch = _batch(model, masked(DS))
    for term in (T.MCM(), T.RAM()):
        value = term(batch)
        assert torch.isfinite(value)
    plain = build_model(ModelSpec.from_dataset(DS, d=16), seed=0)
    with pytest.raises(ValueError, match="unimodal=True"):
        T.MCM()(_batch(plain, DS))
    with pytest.raises(ValueError, match="weight"):
        T.RAM(weight=-1)


def test_ram_is_zero_when_no_modality_alone_does_better():
    model = build_model(UNI, seed=0)
    with torch.no_grad():  # make the joint classifier perfect on this batch: logits = 10 * onehot
        batch = _batch(model, DS)
    batch.logits = 10.0 * torch.nn.functional.one_hot(batch.y, DS.num_classes).float()
    assert T.RAM().compute(batch).item() == 0.0
    no_labels = _batch(model, DS, labeled=torch.zeros(32, dtype=torch.bool))
    assert T.RAM().compute(no_labels).item() == 0.0
    # a joint classifier that is confidently wrong: every unimodal view is better
    batch.logits = 10.0 * torch.nn.functional.one_hot((batch.y + 1) % 10, DS.num_classes).float()
    assert T.RAM().compute(batch).item() > 0.0


def _written_out_nt_xent(a, b, tau):
    """-log(exp(<a_i, b_i>/tau) / sum over the other 2B-1 rows), per row of [a; b], averaged:
    FedMVP's MCM term for one modality, written from its equation with unit rows."""
    rows = torch.cat([a, b])
    rows = rows / rows.norm(dim=1, keepdim=True)
    n = len(a)
    losses = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        sims = torch.stack([rows[i] @ rows[j] for j in others]) / tau
        losses.append(-(rows[i] @ rows[partner] / tau - torch.logsumexp(sims, 0)))
    return torch.stack(losses).mean()


def test_mcm_sum_form_equals_fedmvps_sum_over_modalities_and_is_twice_the_mean():
    model = build_model(UNI, seed=0)
    batch = _batch(model, DS, n=12)  # every modality present
    joint, uni = batch.features["joint"], batch.features["unimodal"]
    expected = sum(_written_out_nt_xent(joint, z, 0.1) for z in uni.values())
    torch.testing.assert_close(T.MCM().compute(batch), expected)  # the default is the sum
    ratio = T.MCM().compute(batch) / T.MCM(reduction="mean").compute(batch)
    assert ratio.item() == pytest.approx(len(uni))  # two modalities: the mean is half the sum
    with pytest.raises(ValueError, match="reduction='max'"):
        T.MCM(reduction="max")


def test_ram_gradient_reaches_the_unimodal_projection_only_without_detach():
    model = build_model(UNI, seed=0)
    batch = _batch(model, DS)
    # a confidently wrong joint classifier, so every modality alone does better and RAM acts
    batch.logits = 10.0 * torch.nn.functional.one_hot((batch.y + 1) % 10, DS.num_classes).float()
    grads = {}
    for detach in (True, False):
        model.zero_grad()
        T.RAM(detach_unimodal=detach).compute(batch).backward(retain_graph=True)
        grads[detach] = sum(
            0.0 if p.grad is None else float(p.grad.abs().sum())
            for p in model.unimodal.parameters()
        )
    assert grads[True] == 0.0 and grads[False] > 0.0  # FedMVP's form pulls both together
    assert T.RAM().detach_unimodal is False  # ... and is the default
    with pytest.raises(ValueError, match="detach_unimodal"):
        T.RAM(detach_unimodal="no")


FEDMVP = UNI.replace(shared_encoder=True, residual_head=True, dropout=0.1)


def test_shared_encoder_is_one_map_for_the_joint_and_every_unimodal_representation():
    model = build_model(FEDMVP, seed=0).eval()
    x = {m: t[:8] for m, t in DS.modalities.items()}
    feats = model.features(x)

    # written out: each modality's projection, then the one shared linear map, then unit norm
    def common(v):
        return torch.nn.functional.normalize(model.common(v), dim=1)

    parts = {m: model.encoders[m](x[m]) for m in FEDMVP.names}
    for m in FEDMVP.names:
        torch.testing.assert_close(feats["unimodal"][m], common(model.unimodal[m](parts[m])))
    fused = model.fusion({m: [parts[m]] for m in FEDMVP.names}, torch.ones(8, len(FEDMVP.names)))
    torch.testing.assert_close(feats["joint"], common(fused))
    # MCM alone trains the shared map (it sits under every representation)
    model.zero_grad()
    T.MCM()(_batch(model, DS, n=16)).backward()
    assert model.common.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shared_encoder=True needs unimodal=True"):
        ModelSpec.from_dataset(DS, shared_encoder=True)


def test_residual_head_is_fedmvps_classifier_and_ram_skips_it():
    model = build_model(FEDMVP, seed=0).eval()  # eval: dropout off
    x = {m: t[:8] for m, t in DS.modalities.items()}
    feats = model.features(x)
    z = feats["joint"]
    block = model.residual
    expected = model.head(z + block.proj2(torch.relu(block.proj1(z))))
    torch.testing.assert_close(feats["logits"], expected)
    assert block.proj1.weight.shape == (z.shape[1], z.shape[1])
    # RAM classifies a unimodal representation with the last layer alone, as FedMVP's
    # marginal_loss calls its classifier: moving the residual block does not change RAM
    batch = _batch(model, DS)
    batch.logits = 10.0 * torch.nn.functional.one_hot((batch.y + 1) % 10, DS.num_classes).float()
    before = T.RAM().compute(batch)
    with torch.no_grad():
        block.proj2.weight.add_(1.0)
    torch.testing.assert_close(T.RAM().compute(batch), before)
    # without the flag: no residual block, the plain linear head on the joint representation
    plain = build_model(UNI, seed=0).eval()
    assert not hasattr(plain, "residual") and not hasattr(plain, "common")


def test_training_with_completion_mcm_and_ram_runs_and_logs_the_terms():
    part = fm.partition.missing_modalities(fm.partition.iid(DS, 3, seed=0), DS, 0.8, seed=0)
    clients = C.complete(part.clients(DS, seed=0), "regression")
    trainer = fm.federated.LocalTrainer(
        losses=[fm.federated.CrossEntropy(), T.MCM(), T.RAM()], max_grad_norm=5.0
    )
    history = fm.federated.simulate(
        clients, UNI, trainer, fm.federated.FedAvg(), rounds=2, progress=False
    )
    train = history.df[history.df.split == "train"]
    assert {"loss_mcm", "loss_ram"} <= set(train.metric) and train.value.notna().all()


# ------------------------------------------------------------------ frozen (digits only)
def test_frozen_completion_on_digits_fills_with_public_models(tmp_cache):
    ds = fm.data.digits(n_samples=120, seed=0, progress=False)
    data = masked(ds, rate=0.6, seed=1)
    out = C.make("frozen").fit(data).transform(data)
    miss = ~data.present
    assert torch.equal(out.filled, miss)
    for j, m in enumerate(ds.names):
        x = out.modalities[m]
        assert x.shape == ds.modalities[m].shape and torch.isfinite(x).all()
        assert torch.equal(x[data.present[:, j]], data.modalities[m][data.present[:, j]])
    # a filled caption is a mix of class prototypes: unit length; images stay in [0, 1]
    text = out.modalities["text"][miss[:, 2]]
    torch.testing.assert_close(text.norm(dim=1), torch.ones(len(text)))
    assert out.modalities["image"].min() >= 0 and out.modalities["image"].max() <= 1
    again = C.make("frozen").fit(data).transform(data)  # seeded: the same voices
    assert torch.equal(again.modalities["audio"], out.modalities["audio"])
    with pytest.raises(ValueError, match="shaped"):
        C.make("frozen").fit(DS)


def test_frozen_models_beat_chance_on_mnist_but_are_far_from_perfect():
    # Measured on the first 1000 digits: image classifier 0.52 (the public 8x8 set is another
    # population), caption prototypes 0.92, generated images classified back 0.91.
    ds = fm.data.digits(n_samples=300, seed=0, progress=False, modalities=("image", "text"))
    image_acc = float(
        (fm.pretrained.classify_images(ds.modalities["image"]).argmax(1) == ds.y).float().mean()
    )
    text_acc = float(
        (fm.pretrained.classify_text(ds.modalities["text"]).argmax(1) == ds.y).float().mean()
    )
    assert 0.35 < image_acc < 0.75 and text_acc > 0.85


def test_knn_averages_only_real_neighbours_when_few_samples_are_complete():
    pairs = fm.data.synthetic(n_samples=40, dims={"image": 12, "text": 8}, seed=0)
    data = masked(pairs, rate=1.0, seed=2)  # every sample misses one of its two modalities
    present = data.present.clone()
    present[:3] = True  # three complete samples
    data = data.replace(present=present, modalities=pairs.modalities)
    out = C.KNN(k=5).fit(data).transform(data)
    rows = torch.nonzero(~present[:, 0]).flatten()
    # a sample without its image shares only its caption with the three complete samples;
    # the image-only samples are no neighbours at all, so k=5 averages exactly those three
    expect = pairs.modalities["image"][:3].mean(0).expand(len(rows), -1)
    torch.testing.assert_close(out.modalities["image"][rows], expect)


def test_frozen_towers_feed_the_unimodal_representations_and_are_not_state(tmp_cache):
    ds = fm.data.digits(n_samples=40, seed=0, progress=False, modalities=("image", "text"))
    spec = ModelSpec.from_dataset(ds, d=16, hidden=32, unimodal=True, frozen_towers=True)
    model = build_model(spec, seed=0)
    # the towers add no state: only the two projections are new next to the plain model
    plain = build_model(ModelSpec.from_dataset(ds, d=16, hidden=32), seed=0)
    added = set(model.state_dict()) - set(plain.state_dict())
    assert added == {
        "unimodal.image.weight",
        "unimodal.image.bias",
        "unimodal.text.weight",
        "unimodal.text.bias",
    }
    assert model.unimodal["image"].in_features == 64 and model.unimodal["text"].in_features == 384
    batch = _batch(model, ds, n=16)
    loss = T.MCM()(batch) + T.RAM()(batch)
    loss.backward()
    assert model.unimodal["image"].weight.grad is not None
    assert all(not p.requires_grad for p in fm.pretrained.image_tower().parameters())
    with pytest.raises(ValueError, match="needs unimodal=True"):
        ModelSpec.from_dataset(ds, frozen_towers=True)
    with pytest.raises(ValueError, match="no frozen tower"):  # a spectrogram has no tower
        ModelSpec(inputs=(("audio", (32, 32)),), num_classes=10, unimodal=True,
                  frozen_towers=True)  # fmt: skip
    # (d,) vectors count as features a tower computed beforehand (fm.towers)
    assert ModelSpec.from_dataset(DS, unimodal=True, frozen_towers=True).frozen_towers


# ------------------------------------------------------------------ effect on the digits


def test_views_scores_every_modality_alone_and_names_them():
    import fedlab_mm as fm
    from fedlab_mm.federated import evaluate

    ds = fm.data.synthetic(n_samples=120, seed=0)
    model = fm.models.build_model(fm.models.ModelSpec.from_dataset(ds, d=8, hidden=16))
    out = C.views(model, ds, labels={ds.names[0]: "first alone"})
    assert list(out) == ["both", "first alone", *[f"{m} only" for m in ds.names[1:]]]
    assert out["both"] == evaluate(model, ds)["accuracy"]
    assert out[f"{ds.names[1]} only"] == evaluate(model, ds, only=ds.names[1])["accuracy"]
    with pytest.raises(ValueError, match="labels"):
        C.views(model, ds, labels={"smell": "smell only"})


def test_the_completion_benchmark_runs_and_pairs_each_strategy_with_masking(capsys):
    from benchmarks import completion as B

    df = B.main(["--quick"])
    assert set(df.strategy) == {"mask", "regression", B.PLAIN}
    assert sorted(df.rate.unique()) == [0.0, 0.8]
    at_zero = df[(df.rate == 0.0) & (df.strategy != B.PLAIN)]
    assert (
        at_zero[list(B.VIEWS)].nunique().eq(1).all()
    )  # nothing missing: one run for every strategy
    paired = B.paired_vs_mask(df)
    assert (0.8, "regression") in paired.index
    assert "minus masking, paired by seed" in capsys.readouterr().out
