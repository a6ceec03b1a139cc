"""Frozen towers from transformers (issue 24), on tiny random models saved to a temp dir."""

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.federated import CrossEntropy, FedAvg, LocalTrainer, Simulation

transformers = pytest.importorskip("transformers")

DS = fm.data.digits(60, modalities=("image", "text"), progress=False)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP (two small layers per side, a character-level CLIP tokenizer),
    saved and loaded by path."""
    return fm.towers.tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


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


# ----------------------------------------------------------------- FedAlign on a real CLIP
def _spy_on_fit(sim, rounds):
    """Run ``sim`` and return, per client, the keys it received and the update it sent."""
    sent, fit = {}, fm.federated.Client.fit

    def spy(self, received, rnd, seed, extra=()):
        update = fit(self, received, rnd, seed, extra)
        sent[self.client_id] = (set(received), update)
        return update

    fm.federated.Client.fit = spy
    try:
        sim.run(rounds)
    finally:
        fm.federated.Client.fit = fit
    return sent


def test_fedalign_adapts_a_clip_vision_model_with_lora_and_sends_only_adapters(clip_dir):
    spec = fm.mini_clip.BroadcastSpec(classes=DS.classes, tower=str(clip_dir))
    net = spec.build()
    # the adapted layers are read off the model: its attention blocks' query and value
    assert net.adapted and all(n.endswith(("q_proj", "v_proj")) for n in net.adapted)
    assert len(net.adapted) == 2 * 2  # two layers of the tiny CLIP, query and value each
    clip_vision = fm.towers.clip_model(clip_dir).vision_model.state_dict()
    images = fm.data.digits(60, modalities=("image",), progress=False)
    rest, test = fm.partition.holdout(images, 0.25, seed=0)
    clients = fm.partition.iid(rest, 3, seed=0).clients(rest, seed=0)
    recipe = fm.broadcast.fedalign(spec, text_steps=1, epochs=1)
    sim = Simulation(clients, recipe.spec, recipe.trainer, recipe.strategy, global_test=test,
                     progress=False)  # fmt: skip
    start = {k: v.clone() for k, v in sim.global_state.items()}
    sent = _spy_on_fit(sim, 2)
    adapters = {k for k in sim.global_state if fm.models.lora.is_adapter(k)}
    assert len(adapters) == 2 * len(net.adapted)  # A and B of each adapted layer
    for received, update in sent.values():
        assert received == adapters | {"anchors"}
        assert set(update.state) == adapters  # the tower's own weights never travel
        assert update.payload["prototypes"].shape == (len(DS.classes), 16)
    assert any(not torch.equal(sim.global_state[k], start[k]) for k in adapters)
    # the tower itself never changed, on the server or on any client
    for model in [c.model for c in sim.clients]:
        base = {k.replace(".base_layer", ""): v for k, v in
                model.encoder.vision_model.state_dict().items() if "lora_" not in k}  # fmt: skip
        assert base.keys() == clip_vision.keys()
        assert all(torch.equal(base[k], clip_vision[k]) for k in clip_vision)
    # the server tuned its CLIP text adapters, and the anchors it sends moved with them
    assert recipe.strategy.text.clip and recipe.strategy.server_state()
    assert not torch.equal(sim.global_state["anchors"], start["anchors"])
    assert len(sim.history.curve()) == 2


def test_clip_anchors_are_clips_own_text_features_of_the_prompts(clip_dir):
    """The anchors the kit builds equal what transformers' CLIPModel computes by itself."""
    classes = ["cat", "dog", "bird"]
    anchors = fm.mini_clip.class_anchors(classes, tower=str(clip_dir))
    model = transformers.CLIPModel.from_pretrained(clip_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(clip_dir)
    prompts = [f"a photo of a {c}." for c in classes]
    with torch.no_grad():
        direct = model.get_text_features(**tokenizer(prompts, padding=True, return_tensors="pt"))
    direct = getattr(direct, "pooler_output", direct)
    torch.testing.assert_close(anchors, torch.nn.functional.normalize(direct, dim=1))


def test_bad_clip_specs_are_named(clip_dir, bert_dir):
    with pytest.raises(ValueError, match="is not a CLIP"):
        fm.mini_clip.BroadcastSpec(tower=str(bert_dir))
    with pytest.raises(ValueError, match="must be strings that each contain"):
        fm.mini_clip.BroadcastSpec(tower=str(clip_dir), templates=("no placeholder",))
    with pytest.raises(ValueError, match="at least 2 classes"):
        fm.mini_clip.BroadcastSpec(classes=("one",), tower=str(clip_dir))
    # any class names with a real CLIP; the CLIP in miniature still needs the ten digits
    assert fm.mini_clip.BroadcastSpec(classes=("cat", "dog"), tower=str(clip_dir)).num_classes == 2
    with pytest.raises(ValueError, match="ten digits"):
        fm.mini_clip.BroadcastSpec(classes=("cat", "dog"))


# ----------------------------------------------------------------- FedMVP's completion
def _clip_features(clip_dir, data):
    data = fm.towers.HFTower(clip_dir, "image", device="cpu").featurize(data, cache=False)
    return fm.towers.HFTower(clip_dir, "text", device="cpu").featurize(data, cache=False)


def _holes(data, rate=0.3, seed=0):
    """``data`` with each modality missing independently in ``rate`` of the rows."""
    gen = torch.Generator().manual_seed(seed)
    present = data.present & (torch.rand(data.present.shape, generator=gen) >= rate)
    return data.replace(present=present)


def test_frozen_completion_with_a_clip_fills_text_by_zero_shot_and_image_across_the_gap(
    clip_dir,
):
    featured = _clip_features(clip_dir, DS)
    holed = _holes(featured)
    filler = fm.completion.Frozen(tower=str(clip_dir)).fit(holed)
    filled = filler.transform(holed)
    names = holed.names
    t, i = names.index("text"), names.index("image")
    no_text = ~holed.present[:, t] & holed.present[:, i]
    no_image = ~holed.present[:, i] & holed.present[:, t]
    assert no_text.any() and no_image.any()
    assert filled.filled[no_text, t].all() and filled.filled[no_image, i].all()
    assert torch.equal(filled.present, holed.present)  # present keeps saying what is real
    # by hand, from transformers' CLIPModel: zero-shot probabilities at CLIP's logit scale,
    # the caption = their mix of the prompt embeddings
    model = transformers.CLIPModel.from_pretrained(clip_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(clip_dir)
    prompts = [f"a photo of a {c}." for c in DS.classes]
    with torch.no_grad():
        z = model.get_text_features(**tokenizer(prompts, padding=True, return_tensors="pt"))
    z = torch.nn.functional.normalize(getattr(z, "pooler_output", z), dim=1)
    v = torch.nn.functional.normalize(holed.modalities["image"][no_text], dim=1)
    probs = torch.softmax(model.logit_scale.exp() * v @ z.T, dim=1)
    expected = torch.nn.functional.normalize(probs @ z, dim=1)
    torch.testing.assert_close(filled.modalities["text"][no_text], expected)
    # the image = the caption's feature moved by the client's mean image - mean text
    unit = torch.nn.functional.normalize
    has = lambda j: holed.present[:, j]  # noqa: E731
    gap = unit(holed.modalities["image"][has(i)], dim=1).mean(0) - unit(
        holed.modalities["text"][has(t)], dim=1).mean(0)  # fmt: skip
    text = unit(holed.modalities["text"][no_image], dim=1)
    torch.testing.assert_close(filled.modalities["image"][no_image],
                               torch.nn.functional.normalize(text + gap, dim=1))  # fmt: skip
    # rows missing both stay masked: there is nothing to read
    both = ~holed.present[:, t] & ~holed.present[:, i]
    assert not filled.filled[both].any()
    with pytest.raises(ValueError, match="featurize it with"):
        fm.completion.Frozen(tower=str(clip_dir)).fit(holed.replace(
            modalities={**holed.modalities, "text": DS.modalities["text"]}))  # fmt: skip


def test_fedmvp_runs_on_clip_features_completed_by_the_clip(clip_dir):
    featured = _clip_features(clip_dir, DS)
    holed = _holes(featured)
    rest, test = fm.partition.holdout(holed, 0.2, seed=0)
    clients = fm.partition.iid(rest, 3, seed=0).clients(rest, seed=0)
    completed = fm.completion.complete(clients, fm.completion.Frozen(tower=str(clip_dir)))
    assert all(c.train.filled.any() for c in completed)
    spec = fm.models.ModelSpec.from_dataset(featured, unimodal=True, frozen_towers=True,
                                            shared_encoder=True, residual_head=True)  # fmt: skip
    trainer = LocalTrainer(losses=[CrossEntropy(), fm.mcm_ram.MCM(), fm.mcm_ram.RAM()])
    history = Simulation(completed, spec, trainer, FedAvg(), global_test=test,
                         progress=False).run(2)  # fmt: skip
    assert len(history.curve()) == 2


# ----------------------------------------------------------------- hub ids
def test_a_hub_id_in_the_local_cache_loads_like_a_folder(clip_dir, tmp_path, monkeypatch):
    """A Hugging Face model id resolves from the local cache (nothing is downloaded)."""
    import shutil

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("FEDLAB_MM_HUB", raising=False)
    repo = tmp_path / "models--someone--tiny-clip"
    shutil.copytree(clip_dir, repo / "snapshots" / ("1" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    by_id = fm.towers.HFTower("someone/tiny-clip", "image", device="cpu")
    by_path = fm.towers.HFTower(clip_dir, "image", device="cpu")
    images = DS.modalities["image"][:5]
    assert torch.equal(by_id.features(images), by_path.features(images))
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        fm.towers.HFTower("someone/other-clip", "image")
