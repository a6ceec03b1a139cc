import numpy as np
import pytest

from fedlab_mm import partition as P
from fedlab_mm.partition import skew


def test_distances_on_known_distributions():
    same = skew.js_distance([1, 1, 2], [2, 2, 4])
    assert same == pytest.approx(0.0, abs=1e-12)
    assert skew.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert skew.hellinger([1, 0], [0, 1]) == pytest.approx(1.0)
    assert skew.hellinger([1, 1], [1, 1]) == pytest.approx(0.0, abs=1e-12)
    # closed form: JS([1,0],[.5,.5]) = 1 - 0.5 * H2(0.75 .. ) via the definition
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    m = (p + q) / 2
    kl = lambda a, b: sum(x * np.log2(x / y) for x, y in zip(a, b) if x > 0)  # noqa: E731
    assert skew.js_distance(p, q) == pytest.approx(np.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def test_effective_classes_and_gini():
    assert skew.effective_classes([5, 5, 5, 5]) == pytest.approx(4.0)
    assert skew.effective_classes([7, 0, 0]) == pytest.approx(1.0)
    assert skew.gini([3, 3, 3]) == pytest.approx(0.0)
    assert skew.gini([0, 0, 0, 10]) == pytest.approx(0.75)


def test_report_columns_and_summary():
    y = np.arange(300) % 3
    part = P.scarce_labels(P.pathological(y, 3, classes_per_client=1), 0.5)
    table = skew.report(part, y)
    assert list(table.columns) == [
        "size",
        "classes",
        "effective_classes",
        "hellinger",
        "js_distance",
        "labeled",
    ]
    assert (table["classes"] == 1).all()
    assert table["effective_classes"].to_numpy() == pytest.approx(1.0)
    overall = skew.summary(part, y)
    assert overall["size_gini"] == pytest.approx(0.0)
    assert overall["labeled"] == pytest.approx(0.5)
