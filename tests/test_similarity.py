import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.cka import hsic, layerwise_cka, linear_cka, rbf_cka

GEN = torch.Generator().manual_seed(0)
X = torch.randn(200, 20, generator=GEN, dtype=torch.float64)


def test_cka_of_a_representation_with_itself_and_its_invariances():
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=GEN, dtype=torch.float64))
    for other in (X, X @ q, 3.5 * X, X + 7.0, 2.0 * (X @ q) - 1.0):
        assert float(linear_cka(X, other)) == pytest.approx(1.0, abs=1e-10)
        assert float(linear_cka(X, other, form="gram")) == pytest.approx(1.0, abs=1e-10)
    # an ill-conditioned linear map is not a rotation: CKA drops below 1
    a = torch.diag(torch.logspace(0, 4, 20, dtype=torch.float64))
    assert float(linear_cka(X, X @ a)) < 0.9


def test_cka_is_symmetric_bounded_and_both_forms_agree():
    y = X[:, :5] @ torch.randn(5, 30, generator=GEN, dtype=torch.float64)
    y = y + torch.randn(200, 30, generator=GEN, dtype=torch.float64)
    for form in ("feature", "gram"):
        value = float(linear_cka(X, y, form=form))
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(float(linear_cka(y, X, form=form)), abs=1e-12)
    assert float(linear_cka(X, y)) == pytest.approx(float(linear_cka(X, y, form="gram")), abs=1e-10)
    assert 0.0 <= float(rbf_cka(X, y)) <= 1.0
    assert float(rbf_cka(X, 2 * X + 1)) == pytest.approx(1.0, abs=1e-8)  # median-scaled


def test_debiased_estimator_is_near_zero_for_independent_features_where_the_biased_one_is_not():
    # the biased estimate is roughly p / (n + p) (MECHANISMS: 0.96 at n=20, p=500)
    a = torch.randn(20, 500, generator=GEN, dtype=torch.float64)
    b = torch.randn(20, 500, generator=GEN, dtype=torch.float64)
    assert float(linear_cka(a, b)) > 0.9
    assert abs(float(linear_cka(a, b, debiased=True))) < 0.1
    with pytest.raises(ValueError, match="n >= 4"):
        hsic(torch.eye(3), torch.eye(3), debiased=True)


def test_constant_input_is_finite_and_bad_input_is_rejected():
    value = linear_cka(torch.ones(10, 4), X[:10])
    assert torch.isfinite(value) and float(value) == 0.0
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(X, X[:10])
    with pytest.raises(ValueError, match="form"):
        linear_cka(X, X, form="rbf")
    with pytest.raises(ValueError, match="n >= 2"):
        linear_cka(X[:1], X[:1])
    with pytest.raises(ValueError, match="fraction"):
        rbf_cka(X, X, fraction=0)


def test_layerwise_cka_of_a_model_with_itself_has_a_unit_diagonal():
    ds = fm.data.synthetic(100, seed=0)
    model = fm.models.build_model(fm.models.ModelSpec.from_dataset(ds, d=16), seed=0)
    layers = ["encoders.image", "encoders.audio", "fusion", "head"]
    table = layerwise_cka(model, model, ds.modalities, layers)
    assert list(table.index) == layers
    for name in layers:
        assert table.loc[name, name] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="not in the model"):
        layerwise_cka(model, model, ds.modalities, ["nope"])


def test_row_normalised_cka_equals_cka_of_the_normalised_rows_and_ignores_row_norms():
    # FedMVP's cka_similarity: unit rows, then linear CKA (the reference written out here)
    scales = torch.rand(200, 1, generator=GEN, dtype=torch.float64) * 10 + 0.1
    y = X @ torch.randn(20, 12, generator=GEN, dtype=torch.float64)
    unit_x, unit_y = X / X.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    ref = linear_cka(unit_x, unit_y)
    for form in ("feature", "gram"):
        got = linear_cka(X, y * scales, form=form, normalize_rows=True)
        torch.testing.assert_close(got, ref, atol=1e-9, rtol=0)  # EPS in the gram form
    # without it, unequal row norms change the answer: the option does something
    assert abs(float(linear_cka(X, y * scales)) - float(ref)) > 0.05
    torch.testing.assert_close(
        rbf_cka(X, y * scales, normalize_rows=True), rbf_cka(unit_x, unit_y), atol=1e-12, rtol=0
    )
