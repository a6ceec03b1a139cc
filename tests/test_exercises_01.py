"""Tested solutions of the exercises of notebook 01 (partitioning), at smoke scale."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import fedlab_mm as fm

N_SAMPLES = 600  # the notebook's smoke-mode size
NUM_CLIENTS = 10
# The notebook's digits. Partitions read only the labels, and digits() draws images, audio and
# text from separate streams, so leaving out modalities we do not need changes nothing else.
DS = fm.data.digits(n_samples=N_SAMPLES, modalities=("image",), seed=0, progress=False)


def test_exercise_1_mixed_alpha():
    """Give half the clients `alpha = 0.01` and the other half `alpha = 100` (pass a list) and
    plot the JS distance per client with `fm.viz.skew_metrics`."""
    alphas = [0.01] * 5 + [100.0] * 5
    part = fm.partition.dirichlet(DS, NUM_CLIENTS, alpha=alphas, seed=0)
    fig = fm.viz.skew_metrics(part, DS)
    js = np.array([bar.get_height() for bar in fig.axes[2].patches])  # the JS distance panel
    plt.close(fig)
    table = fm.partition.skew.report(part, DS)
    np.testing.assert_allclose(js, table["js_distance"])

    skewed, balanced = table.iloc[:5], table.iloc[5:]
    # Dirichlet(0.01, ..., 100, ...) gives the skewed clients almost nothing; the top-up then
    # fills each to min_size (10) from one class of the largest client (seen on seeds 0-4).
    assert (skewed["classes"] == 1).all() and (skewed["size"] == 10).all()
    assert (balanced["classes"] == 10).all()
    # A one-class client's JS distance is a known value: one-hot against the global mix.
    global_mix = np.bincount(DS.y.numpy(), minlength=10)
    for k in range(5):
        only_class = part.label_counts(DS.y)[k].argmax()
        one_hot = np.eye(10)[only_class]
        np.testing.assert_allclose(js[k], fm.partition.skew.js_distance(one_hot, global_mix))
    # Seeds 0-4: skewed clients 0.85-0.88, balanced clients 0.07-0.15.
    assert js[:5].min() > 0.8 and js[5:].max() < 0.2


def missing_counts(part, data):
    """Per client: its size and how many of its samples miss the image, the text, or both."""
    rows = []
    for k in range(part.num_clients):
        local = part.client_dataset(data, k)
        no_image, no_text = ~local.present[:, 0], ~local.present[:, 1]
        rows.append(
            {
                "size": len(local),
                "no image": int(no_image.sum()),
                "no text": int(no_text.sum()),
                "neither": int((no_image & no_text).sum()),
            }
        )
    return pd.DataFrame(rows)


def test_exercise_2_fedmvp_missing_split():
    """Reproduce FedMVP's "80% missing" setting on an image + text data set
    (`fm.data.digits(modalities=("image", "text"))`) with `rate=0.8` and
    `split={"image": 0.2, "text": 0.8}`. Per client, how many samples miss the image, how many
    the text (`local.present`)? What does the split change?"""
    ds = fm.data.digits(n_samples=N_SAMPLES, modalities=("image", "text"), seed=0, progress=False)
    part = fm.partition.dirichlet(ds, NUM_CLIENTS, alpha=0.5, seed=0)
    counts = {}
    for name, split in (("FedMVP 80%", {"image": 0.2, "text": 0.8}), ("even", None)):
        missing = fm.partition.missing_modalities(part, ds, rate=0.8, split=split, seed=0)
        counts[name] = missing_counts(missing, ds)
    fedmvp, even = counts["FedMVP 80%"], counts["even"]

    # Each client: round(0.8 * size) samples miss exactly one modality, none miss both.
    expected = np.round(0.8 * fedmvp["size"]).astype(int)
    for table in (fedmvp, even):
        assert (table["no image"] + table["no text"] == expected).all()
        assert (table["neither"] == 0).all()

    # The split changes which modality is missing, not how many samples miss one: 20% of the
    # missing ones miss the image (0.19 here), against half of them with an even split (0.50).
    def image_share(table):
        return table["no image"].sum() / expected.sum()

    assert abs(image_share(fedmvp) - 0.2) < 0.06
    assert abs(image_share(even) - 0.5) < 0.06
    assert (fedmvp["no image"] < fedmvp["no text"]).all()


def test_exercise_3_small_and_noisy():
    """Combine `quantity_skew` with `feature_skew(kind="noise")`: which clients are both small
    *and* noisy (`p.sizes`, `p.transforms`)? Keep the answer: notebook 02 averages client
    models weighted by size, and you can then ask how much those clients are heard."""
    sized = fm.partition.quantity_skew(DS, NUM_CLIENTS, sigma=1.0, seed=0)
    p = fm.partition.feature_skew(sized, "image", kind="noise", strength=1.0)
    # One transform per client, as (modality, kind, level).
    noise = np.array([transforms[0][2] for transforms in p.transforms])
    clients = pd.DataFrame({"size": p.sizes, "noise": noise})

    # feature_skew changes how the inputs look, never who holds what.
    assert all(np.array_equal(a, b) for a, b in zip(p.indices, sized.indices))
    # Linear spread: client k gets noise of std strength * k / (N - 1) ...
    np.testing.assert_allclose(noise, np.linspace(0.0, 1.0, NUM_CLIENTS))
    # ... and that is the noise really added to its images.
    for k in range(1, NUM_CLIENTS):
        noisy_images = p.client_dataset(DS, k).modalities["image"]
        clean_images = DS.subset(p.indices[k]).modalities["image"]
        added = noisy_images - clean_images
        assert abs(float(added.std()) - noise[k]) < 0.05 * noise[k]

    # Small: below the median size; noisy: above the median noise level.
    small = clients["size"] < clients["size"].median()
    noisy = clients["noise"] > clients["noise"].median()
    answer = clients.index[small & noisy].tolist()
    # Seed 0: sizes 50 41 77 49 31 61 141 102 28 20, so the small clients among the noisy
    # half (5-9) are 8 and 9.
    assert answer == [8, 9]
    # FedAvg weights by size: two clients in ten, but 48 samples in 600, so they are heard
    # with weight 0.08, less than half their share of the clients.
    weight = clients.loc[answer, "size"].sum() / len(DS)
    assert weight < 0.5 * len(answer) / NUM_CLIENTS
