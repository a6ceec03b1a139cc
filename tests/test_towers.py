"""Frozen towers from transformers (issue 24), on tiny random models saved to a temp dir."""

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.federated import CrossEntropy, FedAvg, LocalTrainer, Simulation

transformers = pytest.importorskip("transformers")

DS = fm.data.digits(60, modalities=("image", "text"), progress=False)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP (two small layers per side), saved and loaded by path."""
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "vocab_size": 99, "max_position_embeddings": 32,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 30, "patch_size": 6},
        projection_dim=16,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-clip")
    transformers.CLIPModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny random BERT with the shipped MiniLM's tokenizer: a plain text encoder."""
    torch.manual_seed(0)
    tokenizer, _ = fm.data.captions.load_text_encoder()
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=24,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=32)  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-bert")
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_clip_image_tower_gives_deterministic_unit_features(clip_dir):
    tower = fm.towers.HFTower(clip_dir, "image", device="cpu")
    z = tower.features(DS.modalities["image"][:10])
    assert z.shape == (10, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(10))
    again = fm.towers.HFTower(clip_dir, "image", device="cpu").features(DS.modalities["image"][:10])
    assert torch.equal(z, again)  # the same weights from disk, no randomness at inference
    assert not torch.allclose(z[0], z[1])  # different digits, different features


def test_a_plain_text_encoder_embeds_captions(bert_dir):
    tower = fm.towers.HFTower(bert_dir, "text", device="cpu")
    featured = tower.featurize(DS, cache=False)
    assert featured.modalities["text"].shape == (60, 24)
    torch.testing.assert_close(featured.modalities["image"], DS.modalities["image"])


def test_fedmvp_trains_on_a_frozen_clip_tower_and_the_tower_never_changes(clip_dir, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    monkeypatch.setenv("FEDLAB_MM_CACHE", str(tmp_path))
    tower = fm.towers.HFTower(clip_dir, "image", device="cpu")
    before = {k: v.clone() for k, v in tower.model.state_dict().items()}
    featured = tower.featurize(DS)
    assert featured.modalities["image"].shape == (60, 16) and len(list(tmp_path.glob("tower-*")))
    rest, test = fm.partition.holdout(featured, 0.2, seed=0)
    clients = fm.partition.iid(rest, 3, seed=0).clients(rest, seed=0)
    spec = fm.models.ModelSpec.from_dataset(featured, unimodal=True, frozen_towers=True,
                                            shared_encoder=True, residual_head=True)  # fmt: skip
    trainer = LocalTrainer(losses=[CrossEntropy(), fm.mcm_ram.MCM(), fm.mcm_ram.RAM()])
    sim = Simulation(clients, spec, trainer, FedAvg(), global_test=test, progress=False)
    history = sim.run(2)
    assert len(history.curve()) == 2
    sent = set(sim.global_state)
    assert not any("vision_model" in k or "text_model" in k for k in sent)  # never sent
    assert all(torch.equal(v, tower.model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(tower.featurize(DS).modalities["image"], featured.modalities["image"])


def test_bad_tower_arguments_are_named(tmp_path, clip_dir):
    with pytest.raises(ValueError, match="is not a local model folder"):
        fm.towers.HFTower(tmp_path, "image")
    with pytest.raises(ValueError, match="modality='audio' must be one of"):
        fm.towers.HFTower(clip_dir, "audio")
    with pytest.raises(ValueError, match="no frozen tower for 'image' with shape"):
        fm.models.ModelSpec(inputs=(("image", (3, 8, 8)),), num_classes=2, unimodal=True,
                            frozen_towers=True)  # fmt: skip


def test_the_cka_graph_probes_on_the_towers_features(clip_dir):
    """The server's CKA probe goes through the same frozen tower as the clients' data, and the
    graph weighs the clients from the representations the models give it."""
    tower = fm.towers.HFTower(clip_dir, "image", device="cpu")
    featured = tower.featurize(DS, cache=False)
    rest, probe = fm.partition.holdout(featured, 0.2, seed=0)
    clients = fm.partition.iid(rest, 3, seed=0).clients(rest, seed=0)
    spec = fm.models.ModelSpec.from_dataset(featured)
    graph = fm.cka_graph.CKAGraph(spec, probe)
    sim = Simulation(clients, spec, LocalTrainer(), graph, progress=False)
    sim.run(1)
    assert graph.graph.shape == (3, 3) and torch.isfinite(graph.graph).all()
    assert probe.modalities["image"].shape[1:] == (16,)
