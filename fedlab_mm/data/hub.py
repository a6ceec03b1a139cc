"""Your own data in the kit: plain arrays or a Hugging Face ``datasets.Dataset`` in, and a
:class:`MultimodalDataset` back out as a ``datasets.Dataset``.

- :func:`~fedlab_mm.data.arrays.from_arrays` (its own module): modalities as arrays or
  tensors, labels, optional class names and masks, validated;
- :func:`from_hf`: a ``datasets.Dataset`` with a label column and any of an image, a text, an
  audio and numeric columns; ``None`` in a column marks that modality missing for that row.
  Text is embedded by a sentence encoder (the shipped MiniLM by default), audio becomes the
  kit's log-mel, and the result is cached like the digits;
- :func:`to_hf`: the way back, one column per modality plus ``label`` (a ``ClassLabel``),
  ``present_<modality>`` and ``labeled`` (what :mod:`fedlab_mm.partition.flower_datasets`
  hands to Flower).

``datasets`` is the optional ``hf`` extra (``make setup`` installs it).
"""

from __future__ import annotations

import io
import wave

import numpy as np
import torch
import torch.nn.functional as F

from . import captions, speech
from .arrays import from_arrays
from .cache import cached
from .dataset import MultimodalDataset

__all__ = ["from_hf", "to_hf"]


def _require_datasets():
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - the hf extra is part of make setup
        raise ImportError(
            "fm.data.from_hf / to_hf need Hugging Face datasets: pip install -e '.[hf]'"
        ) from err
    return datasets


# ----------------------------------------------------------------- Hugging Face datasets
def _column(data, name: str, role: str):
    if not isinstance(name, str) or name not in data.column_names:
        raise ValueError(f"{role}={name!r} is not a column; the columns are {data.column_names}")
    return data[name]


def _labels(data, label: str):
    datasets = _require_datasets()
    values = _column(data, label, "label")
    feature = data.features[label]
    if isinstance(feature, datasets.ClassLabel):
        return np.asarray(values, dtype=np.int64), list(feature.names)
    dtype = getattr(feature, "dtype", "")
    if not (isinstance(feature, datasets.Value) and dtype.startswith(("int", "uint"))):
        raise ValueError(
            f"label={label!r} must be a ClassLabel or an integer column, got {feature}"
        )
    y = np.asarray(values, dtype=np.int64)
    if y.min() < 0:
        raise ValueError(f"label={label!r} holds negative labels ({y.min()})")
    return y, [str(c) for c in range(int(y.max()) + 1)]


def _image(value, size: tuple[int, int], channels: int) -> torch.Tensor:
    from PIL import Image

    if isinstance(value, dict) and value.get("bytes") is not None:  # an undecoded Image
        value = Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, Image.Image):
        value = value.convert("L" if channels == 1 else "RGB")
        arr = np.asarray(value, dtype=np.float32) / 255.0
    else:
        arr = np.asarray(value, dtype=np.float32)
        if arr.max(initial=0.0) > 1.0:
            arr = arr / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    t = torch.from_numpy(np.ascontiguousarray(arr[:3]))
    if t.shape[0] != channels:
        t = t.mean(0, keepdim=True) if channels == 1 else t.expand(3, -1, -1)
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]


def _channels(value) -> int:
    from PIL import Image

    if isinstance(value, Image.Image):
        return 1 if value.mode in ("L", "1", "I", "F") else 3
    arr = np.asarray(value)
    return 3 if arr.ndim == 3 and 3 in (arr.shape[0], arr.shape[-1]) else 1


def _wave(value, sampling_rate):
    """``(samples, rate)`` of one audio cell: a decoded ``{"array", "sampling_rate"}`` dict,
    an undecoded one (``{"bytes"}`` or ``{"path"}`` of a PCM WAV file) or a plain array."""
    if isinstance(value, dict) and value.get("array") is not None:
        return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        raw = value.get("bytes") or open(value["path"], "rb").read()
        with wave.open(io.BytesIO(raw)) as w:
            width, rate, ch = w.getsampwidth(), w.getframerate(), w.getnchannels()
            frames = w.readframes(w.getnframes())
        if width != 2:
            raise ValueError(
                f"audio: only 16-bit PCM WAV is read without a decoder, got {8 * width}-bit"
            )
        pcm = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
        return pcm.reshape(-1, ch).mean(1), rate
    if sampling_rate is None:
        raise ValueError("audio holds plain arrays: pass sampling_rate=")
    return np.asarray(value, dtype=np.float32).reshape(-1), int(sampling_rate)


def _spectrograms(waves: list, rates: list, audio: speech.AudioConfig) -> torch.Tensor:
    rate = rates[0]
    if any(r != rate for r in rates):
        raise ValueError(f"audio has several sampling rates {sorted(set(rates))}: resample first")
    length = max(int(audio.clip_seconds * rate), audio.n_fft + audio.frames)
    clips = torch.stack([torch.from_numpy(speech.fit_length(w, length)) for w in waves])
    return speech.log_mel(clips, rate, audio.n_mels, audio.frames, audio.n_fft)


def _numeric(data, name: str, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = _column(data, name, "features")
    present = torch.tensor([v is not None for v in values], dtype=torch.bool)
    first = next((v for v in values if v is not None), None)
    if first is None:
        raise ValueError(f"features column {name!r} is empty (every row is None)")
    width = int(np.asarray(first, dtype=np.float32).size)
    out = torch.zeros(rows, width)
    for i, v in enumerate(values):
        if v is None:
            continue
        arr = np.asarray(v, dtype=np.float32).reshape(-1)
        if arr.size != width:
            raise ValueError(
                f"features column {name!r}: row {i} has {arr.size} values, row 0 {width}"
            )
        out[i] = torch.from_numpy(arr)
    return out, present


def from_hf(
    dataset,
    *,
    label: str,
    image: str | None = None,
    text: str | None = None,
    audio: str | None = None,
    features=None,
    image_size=28,
    text_encoder=None,
    sampling_rate: int | None = None,
    audio_config: speech.AudioConfig | None = None,
    batch_size: int = 64,
    cache: bool = True,
    progress: bool = True,
) -> MultimodalDataset:
    """A Hugging Face ``datasets.Dataset`` as a :class:`MultimodalDataset`.

    Parameters
    ----------
    dataset : datasets.Dataset
        One split (``load_dataset(...)["train"]``, or ``Dataset.from_dict``).
    label : str
        A ``ClassLabel`` column (its names become ``classes``) or an integer column.
    image : str, optional
        A column of PIL images or arrays ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``; becomes
        float ``(C, H, W)`` in [0, 1] at ``image_size`` (an int or ``(H, W)``). One channel when
        the first image is greyscale, else three.
    text : str, optional
        A column of strings, embedded by ``text_encoder`` (a local model folder, or a model id
        in the local Hugging Face cache; default the shipped all-MiniLM-L6-v2) in batches,
        with a progress bar: ``(384,)`` for MiniLM.
    audio : str, optional
        An ``Audio`` column, ``{"array", "sampling_rate"}`` dicts, or plain arrays with
        ``sampling_rate=``; becomes the kit's log-mel ``(n_mels, frames)`` of ``audio_config``.
        Undecoded WAV files are read without an audio decoder.
    features : str, list or dict, optional
        Numeric columns taken as they are: ``"col"`` or ``["a", "b"]`` (a modality per column,
        named after it) or ``{"vitals": "col"}``. Each row a number or a fixed-length list.

    ``None`` in any modality column marks that modality missing for that row. The result is
    cached (keyed by the data set's fingerprint and these options).

    Raises
    ------
    ValueError
        An unknown column (named), a label column that is neither a ``ClassLabel`` nor
        integers, an empty data set, no modality given, or rows of different lengths.
    """
    datasets = _require_datasets()
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            f"dataset must be a datasets.Dataset (one split), got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty: it needs at least one row")
    if isinstance(features, str):
        features = [features]
    if isinstance(features, (list, tuple)):
        features = {c: c for c in features}
    features = dict(features or {})
    roles = {"image": image, "text": text, "audio": audio}
    if not any(roles.values()) and not features:
        raise ValueError("name at least one modality column: image=, text=, audio= or features=")
    for role, col in [*roles.items(), *((f"features[{k!r}]", c) for k, c in features.items())]:
        if col is not None:
            _column(dataset, col, role)
    y, classes = _labels(dataset, label)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    audio_config = audio_config or speech.AudioConfig()
    params = {
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "rows": len(dataset),
        "label": label,
        "roles": roles,
        "features": features,
        "image_size": list(size),
        "text_encoder": str(text_encoder),
        "sampling_rate": sampling_rate,
        "audio": [audio_config.n_mels, audio_config.frames, audio_config.clip_seconds,
                  audio_config.n_fft],
    }  # fmt: skip
    n = len(dataset)

    def make() -> dict:
        from tqdm.auto import tqdm

        out = {}
        if image is not None:
            values = list(dataset.cast_column(image, datasets.Image(decode=True))[image]
                          if isinstance(dataset.features[image], datasets.Image)
                          else dataset[image])  # fmt: skip
            first = next((v for v in values if v is not None), None)
            if first is None:
                raise ValueError(f"image={image!r}: every row is None")
            ch = _channels(first)
            imgs = torch.zeros(n, ch, *size)
            for i, v in enumerate(tqdm(values, desc="images", disable=not progress)):
                if v is not None:
                    imgs[i] = _image(v, size, ch)
            out["image"] = imgs
            out["present/image"] = torch.tensor([v is not None for v in values])
        if text is not None:
            strings = dataset[text]
            bad = [i for i, s in enumerate(strings) if s is not None and not isinstance(s, str)]
            if bad:
                raise ValueError(f"text={text!r}: row {bad[0]} is not a string")
            rows = [i for i, s in enumerate(strings) if s is not None]
            chunks = []
            for start in tqdm(range(0, len(rows), batch_size), desc="text", disable=not progress):
                batch = [strings[i] for i in rows[start : start + batch_size]]
                chunks.append(captions.embed(batch, path=text_encoder, batch_size=batch_size))
            z = torch.cat(chunks) if chunks else captions.embed([], path=text_encoder)
            emb = torch.zeros(n, z.shape[1])
            emb[torch.tensor(rows, dtype=torch.long)] = z
            out["text"] = emb
            out["present/text"] = torch.tensor([s is not None for s in strings])
        if audio is not None:
            column = dataset
            if isinstance(dataset.features[audio], datasets.Audio):  # read without torchcodec
                column = dataset.cast_column(audio, datasets.Audio(decode=False))
            values = column[audio]
            keep = [i for i, v in enumerate(values) if v is not None]
            if not keep:
                raise ValueError(f"audio={audio!r}: every row is None")
            pairs = [_wave(values[i], sampling_rate) for i in keep]
            spec = _spectrograms([w for w, _ in pairs], [r for _, r in pairs], audio_config)
            full = torch.zeros(n, *spec.shape[1:])
            full[torch.tensor(keep)] = spec
            out["audio"] = full
            out["present/audio"] = torch.tensor([v is not None for v in values])
        for name, col in features.items():
            out[name], out[f"present/{name}"] = _numeric(dataset, col, n)
        return out

    stored = cached("hf", params, make, cache)
    order = ["image", "text", "audio", *features]  # the same order from the cache as fresh
    names = [k for k in order if k in stored]
    present = {k: stored[f"present/{k}"].bool() for k in names}
    return from_arrays({k: stored[k] for k in names}, y, classes=classes, present=present)


def to_hf(dataset: MultimodalDataset):
    """A :class:`MultimodalDataset` as a ``datasets.Dataset``: one column per modality (its
    values), ``label`` (a ``ClassLabel`` with the class names), ``present_<modality>`` and
    ``labeled`` (bool). :func:`from_arrays` of those columns gives the same data set back."""
    datasets = _require_datasets()
    if not isinstance(dataset, MultimodalDataset):
        raise ValueError(f"dataset must be a MultimodalDataset, got {type(dataset).__name__}")
    columns = {m: dataset.modalities[m].numpy() for m in dataset.names}
    columns["label"] = dataset.y.numpy()
    for j, m in enumerate(dataset.names):
        columns[f"present_{m}"] = dataset.present[:, j].numpy()
    columns["labeled"] = dataset.labeled.numpy()
    feats = {}
    for m in dataset.names:
        shape = tuple(dataset.modalities[m].shape[1:])
        if len(shape) == 1:
            feats[m] = datasets.Sequence(datasets.Value("float32"), length=shape[0])
        else:
            kind = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D}[len(shape)]
            feats[m] = kind(shape=shape, dtype="float32")
    feats["label"] = datasets.ClassLabel(names=list(dataset.classes))
    for m in dataset.names:
        feats[f"present_{m}"] = datasets.Value("bool")
    feats["labeled"] = datasets.Value("bool")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(feats))
