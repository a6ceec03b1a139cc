import math

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import federated as F
from fedlab_mm.decomposition import (
    Alignment,
    Diversity,
    Independence,
    fedepa,
    info_nce,
    linear_cka,
    recovery,
)
from fedlab_mm.models import AttentionFusion, ModelSpec, build_model
from fedlab_mm.personalization import ALA
from tests.effects import recovery_after_training

DS = fm.data.synthetic(n_samples=400, dims={"image": 12, "audio": 10, "text": 8}, seed=0)
SPEC = ModelSpec.from_dataset(DS, d=16, hidden=32, split=8, fusion="attention", heads=2)


def batch_for(model, ds=DS, present=None, n=32):
    x = {m: t[:n] for m, t in ds.modalities.items()}
    present = torch.ones(n, ds.M) if present is None else present
    feats = model.features(x, present)
    return F.Batch(
        model, x, present, ds.y[:n], torch.ones(n, dtype=torch.bool), feats["logits"], {}, {}, feats
    )


# ------------------------------------------------------------------ InfoNCE
def test_info_nce_is_about_log_b_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(64, 512, generator=gen), torch.randn(64, 512, generator=gen)
    assert info_nce(u, v, tau=1.0).item() == pytest.approx(math.log(64), rel=0.05)
    # at tau = 0.1 a little above log B (MECHANISMS: 4.55 vs 4.16 at B = 64)
    assert math.log(64) < info_nce(u, v, tau=0.1).item() < math.log(64) + 0.8


def test_info_nce_is_near_zero_on_aligned_separated_pairs_and_symmetric():
    u = torch.eye(16)
    assert info_nce(u, u, tau=0.01).item() < 1e-6
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    torch.testing.assert_close(info_nce(a, b), info_nce(b, a))
    assert info_nce(a, b, tau=0.05) > info_nce(a, b, tau=0.5)  # smaller tau, sharper
    with pytest.raises(ValueError, match="tau"):
        info_nce(a, b, tau=0)


# ------------------------------------------------------------------ independence
def test_independence_is_zero_for_parts_orthogonal_by_construction():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=gen), torch.randn(20, 3, generator=gen)
    a = torch.cat([x, torch.zeros(20, 3)], 1)  # disjoint coordinates: cos(a_i, c_i) = 0
    c = torch.cat([torch.zeros(20, 3), y], 1)
    feats = {"aligned": {"m": a}, "context": {"m": c}, "present": torch.ones(20, 1)}
    batch = F.Batch(
        None,
        {},
        torch.ones(20, 1),
        torch.zeros(20, dtype=torch.long),
        torch.ones(20, dtype=torch.bool),
        torch.zeros(20, 2),
        {},
        {},
        feats,
    )
    assert Independence(form="orthogonal").compute(batch).item() == pytest.approx(0.0, abs=1e-7)
    # batch form: centred columns orthogonal across samples -> CKA 0
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(20, 1), torch.randn(20, 6, generator=gen)], 1))
    xa, yc = basis[:, 1:4], basis[:, 4:7]  # orthogonal to the ones vector: already centred
    assert linear_cka(xa, yc).item() == pytest.approx(0.0, abs=1e-6)
    assert linear_cka(xa, xa).item() == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------ attention fusion
def test_attention_fusion_shapes_and_rows_summing_to_one():
    model = build_model(SPEC, seed=0).eval()
    batch = batch_for(model)
    assert batch.features["joint"].shape == (32, 8)
    attention = model.fusion.last_attention
    assert attention.shape == (32, 6, 6)
    torch.testing.assert_close(attention.sum(-1), torch.ones(32, 6))


def test_masked_modality_leaves_the_attention_output_unchanged():
    model = build_model(SPEC, seed=0).eval()
    present = torch.ones(32, 3)
    present[:, 1] = 0
    x = {m: t[:32] for m, t in DS.modalities.items()}
    garbage = {**x, "audio": torch.randn(32, 10) * 100}
    torch.testing.assert_close(model(x, present), model(garbage, present))
    assert not torch.allclose(model(x), model(garbage))


def test_pooled_output_is_permutation_invariant_without_type_embeddings():
    torch.manual_seed(0)
    fusion = AttentionFusion(["a", "b", "c"], k=8, heads=2, type_embeddings=False).eval()
    parts = {m: [torch.randn(5, 8), torch.randn(5, 8)] for m in "abc"}
    present = torch.ones(5, 3)
    shuffled = AttentionFusion(["c", "a", "b"], k=8, heads=2, type_embeddings=False).eval()
    shuffled.load_state_dict(fusion.state_dict())
    torch.testing.assert_close(fusion(parts, present), shuffled(parts, present))


def test_spec_checks_for_attention():
    with pytest.raises(ValueError, match="split"):
        ModelSpec.from_dataset(DS, fusion="attention")
    with pytest.raises(ValueError, match="heads"):
        ModelSpec.from_dataset(DS, fusion="attention", split=6, heads=4)


def test_mean_fusion_is_the_attention_fusion_without_its_attention():
    spec = SPEC.replace(fusion="mean")
    model = build_model(spec, seed=0).eval()
    x = {m: t[:32] for m, t in DS.modalities.items()}
    present = torch.ones(32, 3)
    present[:, 1] = 0  # audio missing: its two tokens leave the mean
    with torch.no_grad():
        feats = model.features(x, present)
        tokens = [feats[part][m] + model.fusion.types[2 * j + i]
                  for j, m in enumerate(DS.names) for i, part in enumerate(("aligned", "context"))
                  if m != "audio"]  # fmt: skip
        by_hand = torch.stack([model.fusion.norm(t) for t in tokens]).mean(0)
    torch.testing.assert_close(feats["joint"], by_hand)
    assert feats["joint"].shape == (32, 8) and not hasattr(model.fusion, "attn")
    garbage = {**x, "audio": torch.randn(32, 10) * 100}
    torch.testing.assert_close(model(x, present), model(garbage, present))
    assert not torch.allclose(model(x), model(garbage))
    # the same parameter names as the attention fusion, minus the attention layer's
    names = {n for n in build_model(SPEC).state_dict() if not n.startswith("fusion.attn.")}
    assert set(model.state_dict()) == names
    assert fedepa(DS, k=8, d=16, hidden=32, fusion="mean").spec.fusion == "mean"


def test_spec_and_recipe_refuse_unknown_fusions_and_a_mean_without_split():
    with pytest.raises(ValueError, match="split"):
        ModelSpec.from_dataset(DS, fusion="mean")
    for bad in ("sum", "Mean", ""):
        with pytest.raises(
            ValueError, match=r"fusion=.*must be one of \('concat', 'attention', 'mean'\)"
        ):
            fedepa(DS, fusion=bad)


# ------------------------------------------------------------------ losses in use
def test_losses_are_finite_with_one_class_and_with_missing_modalities():
    model = build_model(SPEC, seed=0)
    one_class = DS.subset(torch.nonzero(DS.y == 0).flatten()[:16])
    present = torch.ones(16, 3)
    present[::2, 0] = 0
    batch = batch_for(model, one_class, present, n=16)
    for term in (Alignment(), Independence(), Independence(form="cka"), Diversity()):
        value = term(batch)
        assert torch.isfinite(value) and value.requires_grad


def test_losses_need_the_split_and_check_their_settings():
    plain = build_model(ModelSpec.from_dataset(DS, d=16), seed=0)
    with pytest.raises(ValueError, match="split=k"):
        Alignment()(batch_for(plain))
    with pytest.raises(ValueError, match="weight"):
        Alignment(weight=-1)
    with pytest.raises(ValueError, match="tau"):
        Alignment(tau=0)
    with pytest.raises(ValueError, match="form"):
        Independence(form="hsic2")
    with pytest.raises(ValueError, match="hinge"):
        Diversity(hinge=-1)


def test_unlabeled_clients_still_learn_through_alignment():
    part = fm.partition.scarce_labels(fm.partition.iid(DS, 2, seed=0), 0.0)
    clients = part.clients(DS, seed=0)
    trainer = F.LocalTrainer(losses=[F.CrossEntropy(), Alignment(), Independence(), Diversity()])
    sim = F.Simulation(clients, SPEC, trainer, F.FedAvg(), progress=False)
    before = {k: v.clone() for k, v in sim.global_state.items()}
    history = sim.run(2)
    moved = [k for k in before if not torch.equal(before[k], sim.global_state[k])]
    assert any(k.startswith("aligned.") for k in moved)  # no labels, yet the heads learned
    losses = history.df[history.df.split == "train"]
    assert set(losses.metric) >= {"loss_align", "loss_indep", "loss_div"}
    assert losses.value.notna().all()


def _recovery(seed, independence):
    losses = [F.CrossEntropy(), Alignment(), independence, Diversity()]
    cka = recovery_after_training(seed, losses, n=3000, rounds=15)  # over the three modalities
    return {
        "a~shared": cka["aligned~shared"],
        "c~shared": cka["context~shared"],
        "c~private": cka["context~private"],
    }


def test_aligned_features_recover_the_shared_latent_and_context_the_private_one():
    # Measured (means over modalities; seeds 0/1/2): a~shared 0.73/0.77/0.78, c~shared
    # 0.35/0.22/0.33, c~private 0.25/0.39/0.26. With per-sample orthogonality instead (same
    # other settings): c~shared 0.68/0.67/0.65 and c~private 0.05/0.12/0.06.
    full = _recovery(0, Independence())
    assert full["a~shared"] - full["c~shared"] > 0.25
    assert full["c~private"] > 0.15
    weak = _recovery(0, Independence(form="orthogonal"))
    assert weak["c~shared"] > 0.6 and weak["c~private"] < 0.1


# ------------------------------------------------------------------ the recipe
def test_fedepa_recipe_is_a_list_edit_away_from_each_ablation():
    full = fedepa(DS, k=8, d=16, hidden=32)
    assert full.spec.split == 8 and full.spec.fusion == "attention"
    names = [term.name for term in full.trainer.losses]
    assert names == ["ce", "align", "indep", "div"]
    assert isinstance(full.trainer.init, ALA) and full.trainer.max_grad_norm == 5.0
    assert [t.name for t in fedepa(DS, align=0).trainer.losses] == ["ce", "indep", "div"]
    assert [t.name for t in fedepa(DS, align=0, indep=0, div=0).trainer.losses] == ["ce"]
    assert not isinstance(fedepa(DS, personalize=False).trainer.init, ALA)
    assert fedepa(DS, fusion="concat").spec.fusion == "concat"
    assert fedepa(DS, independence="orthogonal").trainer.losses[2].form == "orthogonal"
    assert fedepa(DS, optimizer="adam", lr=1e-3).trainer.optimizer == "adam"
    for bad in (dict(align=-0.1), dict(div=float("nan")), dict(indep=True)):
        with pytest.raises(ValueError, match="weight >= 0"):
            fedepa(DS, **bad)
    with pytest.raises(ValueError, match="tau"):
        fedepa(DS, tau=0)


def test_recovery_reports_cka_per_modality_and_checks_its_inputs():
    model = build_model(SPEC, seed=0)
    table = recovery(model, DS)
    assert list(table.index) == DS.names
    assert list(table.columns) == [
        "aligned~shared",
        "context~shared",
        "context~private",
        "aligned~private",
    ]
    assert ((table >= 0) & (table <= 1)).all().all()
    with pytest.raises(ValueError, match="latents"):
        recovery(model, fm.data.public_digits(n_samples=50))
    with pytest.raises(ValueError, match="split"):
        recovery(build_model(ModelSpec.from_dataset(DS, d=16)), DS)


def test_a_sample_with_no_modality_is_refused_by_attention_fusion():
    # multi-head attention with every key masked gives NaN logits; the model says which rows
    model = build_model(SPEC, seed=0).eval()
    batch = {m: x[:4] for m, x in DS.modalities.items()}
    present = torch.ones(4, len(SPEC.names))
    present[2] = 0
    with pytest.raises(ValueError, match=r"positions \[2\] have no modality present"):
        model(batch, present)
    present[2, 0] = 1  # one modality is enough, and gives finite logits
    assert torch.isfinite(model(batch, present)).all()
