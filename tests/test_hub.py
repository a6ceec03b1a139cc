"""Your own data: fm.data.from_arrays, from_hf and to_hf (issue 24), all offline."""

import io
import wave

import numpy as np
import pytest
import torch

import fedlab_mm as fm

datasets = pytest.importorskip("datasets")
from PIL import Image  # noqa: E402

DIGITS = fm.data.digits(12, modalities=("image", "text"), progress=False)
RATE = 16000


def _wav(x: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def user_dataset():
    """A data set the way a user's would look: PIL images, caption strings, WAV audio, a
    numeric column and a ClassLabel; one None per modality."""
    imgs = [Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8))
            for x in DIGITS.modalities["image"]]  # fmt: skip
    caps = list(DIGITS.meta["caption"])
    rng = np.random.default_rng(0)
    audio = [{"bytes": _wav(0.1 * rng.standard_normal(RATE)), "path": None} for _ in range(12)]
    vitals = [[float(i), 2.0] for i in range(12)]
    imgs[3], caps[5], audio[7], vitals[1] = None, None, None, None
    feats = datasets.Features({
        "img": datasets.Image(), "cap": datasets.Value("string"),
        "aud": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "vitals": datasets.Sequence(datasets.Value("float32")),
        "digit": datasets.ClassLabel(names=DIGITS.classes), "count": datasets.Value("int64"),
        "score": datasets.Value("float32"),
    })  # fmt: skip
    labels = DIGITS.y.tolist()
    data = {"img": imgs, "cap": caps, "aud": audio, "vitals": vitals,
            "digit": labels, "count": labels, "score": [0.5] * 12}  # fmt: skip
    hf = datasets.Dataset.from_dict(data, features=feats)
    return hf.cast_column("aud", datasets.Audio(sampling_rate=RATE, decode=False))


HF = user_dataset()
ALL = dict(label="digit", image="img", text="cap", audio="aud", features="vitals", progress=False)


def test_from_hf_reads_every_kind_of_column():
    ds = fm.data.from_hf(HF, cache=False, **ALL)
    assert ds.names == ["image", "text", "audio", "vitals"]
    assert ds.classes == DIGITS.classes and torch.equal(ds.y, DIGITS.y)
    shapes = {m: tuple(x.shape[1:]) for m, x in ds.modalities.items()}
    assert shapes == {"image": (1, 28, 28), "text": (384,), "audio": (32, 32), "vitals": (2,)}
    missing = {
        m: torch.nonzero(~ds.present[:, j]).flatten().tolist() for j, m in enumerate(ds.names)
    }
    assert missing == {"image": [3], "text": [5], "audio": [7], "vitals": [1]}
    keep = torch.arange(12) != 3  # the images are the digits', the captions their embeddings
    torch.testing.assert_close(ds.modalities["image"][keep], DIGITS.modalities["image"][keep])
    assert float(ds.modalities["image"][3].abs().sum()) == 0  # a missing slot holds zeros
    text = fm.data.captions.embed([c for i, c in enumerate(DIGITS.meta["caption"]) if i != 5])
    torch.testing.assert_close(ds.modalities["text"][torch.arange(12) != 5], text)
    assert 0 <= float(ds.modalities["audio"].min()) and float(ds.modalities["audio"].max()) <= 1
    assert ds.modalities["vitals"][4].tolist() == [4.0, 2.0]


def test_from_hf_takes_an_integer_label_and_names_its_classes():
    ds = fm.data.from_hf(HF, label="count", features=["score"], cache=False, progress=False)
    assert ds.classes == [str(c) for c in range(int(DIGITS.y.max()) + 1)]
    assert ds.names == ["score"]


def test_from_hf_caches_by_fingerprint_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLAB_MM_CACHE", str(tmp_path))
    first = fm.data.from_hf(HF, label="digit", text="cap", features="score", progress=False)
    assert len(list(tmp_path.glob("hf-*.safetensors"))) == 1

    def no_embedding(*args, **kwargs):
        raise AssertionError("a cache hit must not embed again")

    monkeypatch.setattr(fm.data.captions, "embed", no_embedding)
    again = fm.data.from_hf(HF, label="digit", text="cap", features="score", progress=False)
    assert torch.equal(first.modalities["text"], again.modalities["text"])
    assert first.names == again.names == ["text", "score"]  # one order, fresh or cached
    with pytest.raises(AssertionError, match="must not embed"):  # other options: a new file
        fm.data.from_hf(
            HF.select(range(6)), label="digit", text="cap", features="score", progress=False
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(label="nope", text="cap"), "label='nope' is not a column"),
        (dict(label="digit", image="pixels"), "image='pixels' is not a column"),
        (dict(label="digit", features={"v": "gone"}), "features\\['v'\\]='gone' is not a column"),
        (dict(label="score", text="cap"), "label='score' must be a ClassLabel or an integer"),
        (dict(label="digit"), "name at least one modality column"),
    ],
)
def test_from_hf_names_the_bad_column(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fm.data.from_hf(HF, cache=False, progress=False, **kwargs)


def test_from_hf_refuses_empty_and_ragged_data():
    with pytest.raises(ValueError, match="dataset is empty"):
        fm.data.from_hf(HF.select([]), label="digit", text="cap", cache=False)
    ragged = datasets.Dataset.from_dict({"v": [[1.0, 2.0], [1.0]], "y": [0, 1]})
    with pytest.raises(ValueError, match="features column 'v': row 1 has 1 values, row 0 2"):
        fm.data.from_hf(ragged, label="y", features="v", cache=False, progress=False)
    with pytest.raises(ValueError, match="must be a datasets.Dataset"):
        fm.data.from_hf({"y": [0]}, label="y", features="v")


def test_from_arrays_validates_and_masks():
    x = np.random.default_rng(0).standard_normal((6, 3))
    some = {"z": np.array([True] * 5 + [False])}
    ds = fm.data.from_arrays({"x": x, "z": np.arange(6.0)}, y=np.array([0, 1, 2, 0, 1, 2]),
                             classes=["a", "b", "c"], present=some)  # fmt: skip
    assert ds.names == ["x", "z"] and ds.modalities["z"].shape == (6, 1)
    assert ds.present[:, 1].tolist() == [True] * 5 + [False] and float(ds.modalities["z"][5]) == 0
    cases = [
        (dict(modalities={"x": x[:5]}, y=np.zeros(6, int)), "modality 'x' has 5 rows, y has 6"),
        (dict(modalities={"x": x}, y=np.zeros(6)), "y must be a 1-d array of integer labels"),
        (dict(modalities={}, y=np.zeros(6, int)), "modalities must be a non-empty dict"),
        (dict(modalities={"x": x}, y=np.arange(6), classes=["a"]), "classes has 1 names"),
        (dict(modalities={"x": x * np.nan}, y=np.zeros(6, int)), "NaN or infinite"),
        (dict(modalities={"x": x}, y=np.zeros(6, int), present={"w": np.ones(6, bool)}),
         "present names modalities \\['w'\\]"),
        (dict(modalities={"x": x}, y=np.zeros(6, int), present={"x": np.zeros(6, bool)}),
         "have no modality at all"),
    ]  # fmt: skip
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            fm.data.from_arrays(**kwargs)


def test_to_hf_and_back_give_the_same_data_set():
    ds = fm.data.from_hf(HF, cache=False, **ALL)
    hf = fm.data.to_hf(ds)
    assert hf.features["label"].names == ds.classes and len(hf) == 12
    hf.set_format("numpy")
    back = fm.data.from_arrays(
        {m: hf[m] for m in ds.names}, y=hf["label"], classes=ds.classes,
        present={m: hf[f"present_{m}"] for m in ds.names}, labeled=hf["labeled"],
    )  # fmt: skip
    assert back.names == ds.names and torch.equal(back.present, ds.present)
    for m in ds.names:
        torch.testing.assert_close(back.modalities[m], ds.modalities[m])


def test_from_hf_embeds_with_a_model_id_from_the_local_hub_cache(tmp_path, monkeypatch):
    """``text_encoder`` may be a Hugging Face model id: found in the local cache (here a
    snapshot linking to the shipped MiniLM's files), it embeds exactly as the folder does."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("FEDLAB_MM_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "hub" / "models--someone--minilm"
    snapshot = repo / "snapshots" / ("2" * 40)
    snapshot.mkdir(parents=True)
    source = fm.data.captions.encoder_path()
    for f in source.iterdir():
        if f.is_file():
            (snapshot / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("2" * 40)
    kw = dict(label="digit", image="img", text="cap", progress=False)
    by_id = fm.data.from_hf(HF, text_encoder="someone/minilm", **kw)
    by_folder = fm.data.from_hf(HF, text_encoder=source, **kw)
    torch.testing.assert_close(by_id.modalities["text"], by_folder.modalities["text"])
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        fm.data.from_hf(HF, text_encoder="someone/absent", cache=False, **kw)
