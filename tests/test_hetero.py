import math

import numpy as np
import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import federated as F
from fedlab_mm import hetero as H
from fedlab_mm.federated import FedAvg, Simulation, evaluate
from tests.known import assert_matches_a_record

DATA = H.tower_features(fm.data.digits(2000, modalities=("image",), progress=False))


def orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(cols, rows, generator=g))
    return q.T.contiguous()


def colora(d_in=16, d_out=12, r=4, seed=0) -> H.CoLoRALinear:
    torch.manual_seed(seed)
    return H.CoLoRALinear(torch.nn.Linear(d_in, d_out), orthonormal(r, d_in, seed),
                          orthonormal(r, d_out, seed + 1).T, scale=2.0)  # fmt: skip


# --------------------------------------------------------------------------- the Co-LoRA layer
def test_zero_p_and_q_give_the_base_layer():
    layer = colora()
    x = torch.randn(5, 16)
    for mode in (layer.train, layer.eval):  # the gate's noise cannot matter either
        mode()
        torch.testing.assert_close(layer(x), layer.base(x))


def test_p_identity_and_q_zero_give_the_plain_low_rank_product():
    layer = colora().eval()
    with torch.no_grad():
        for p in (layer.p_global, layer.p_local):
            p.copy_(torch.eye(4))
    x = torch.randn(5, 16)
    plain = layer.base(x) + 2.0 * x @ layer.a.T @ layer.b.T  # s * B A x
    torch.testing.assert_close(layer(x), plain)


def test_gate_lies_in_the_open_interval_and_is_one_half_with_zero_weights_in_eval():
    gate = H.colora.Gate(16)
    x = torch.randn(200, 16) * 10
    torch.testing.assert_close(gate.eval()(x), torch.full((200, 1), 0.5))
    with torch.no_grad():
        gate.weight.normal_()
        gate.noise.normal_()
    for mode in (gate.eval, gate.train):
        g = mode()(torch.randn(200, 16))
        assert ((g > 0) & (g < 1)).all()
    noisy = gate.train()(x[:1].repeat(50, 1))
    assert noisy.std() > 0  # noisy gating in training


def test_a_layer_that_does_not_fit_its_frames_is_refused():
    with pytest.raises(ValueError, match="do not fit"):
        H.CoLoRALinear(torch.nn.Linear(16, 12), orthonormal(4, 10, 0), orthonormal(4, 12, 1).T, 2.0)


# --------------------------------------------------------------------------- sizes and frames
def test_three_sizes_share_p_and_q_shapes_and_nothing_else():
    nets = {k: s.build() for k, s in H.SIZES.items()}
    pq = {k: {n: v.shape for n, v in m.named_parameters() if n.endswith("p_local")}
          for k, m in nets.items()}  # fmt: skip
    assert [len(v) for v in pq.values()] == [2, 2, 2]  # two Co-LoRA blocks per size
    assert all(s == (8, 8) for v in pq.values() for s in v.values())
    widths = {m.layers[0].b.shape[0] for m in nets.values()}
    assert widths == {32, 64, 128}  # the A/B frames differ with the width
    x = DATA.modalities["image"][:4]
    for m in nets.values():
        assert m({"image": x}).shape == (4, 10)


def test_frames_are_orthonormal_and_shared_spaces_keep_the_anchor_frame():
    ref = H.align_frames(H.SIZES["small"])
    for size in ("medium", "large"):
        frames = H.align_frames(H.SIZES[size])
        for f in frames:
            torch.testing.assert_close(f["a"] @ f["a"].T, torch.eye(8), atol=1e-4, rtol=0)
            torch.testing.assert_close(f["b"].T @ f["b"], torch.eye(8), atol=1e-4, rtol=0)
        torch.testing.assert_close(frames[0]["a"], ref[0]["a"])  # reads the tower's features
        torch.testing.assert_close(frames[-1]["b"], ref[-1]["b"])  # writes logits
    # the anchor's gains are 1 up to float rounding (one unit in the last place on one of
    # the two CPUs measured, exactly 1 on the other)
    assert all(f[g] == pytest.approx(1.0, abs=1e-6) for f in ref for g in ("gain_in", "gain_out"))


def test_alignment_makes_a_larger_models_head_codes_match_the_anchors():
    # Measured on the public digits: R^2 of the aligned head codes 0.84 (medium), 0.85 (large);
    # without the rotation and gain (the layer's own top directions) it is below 0.
    acts = {k: H.frames._block_activations(s)[-1][0] for k, s in H.SIZES.items()}
    target = acts["small"] @ H.align_frames(H.SIZES["small"])[-1]["a"].T
    for size in ("medium", "large"):
        f = H.align_frames(H.SIZES[size])[-1]
        codes = f["gain_in"] * acts[size] @ f["a"].T
        r2 = 1 - ((codes - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)
        assert r2.mean() > 0.75


@pytest.mark.parametrize(
    "kwargs, match",
    [({"width": 4}, "width"), ({"depth": 0}, "depth"), ({"rank": 0}, "rank"),
     ({"rank": 12}, "rank=12"), ({"scale": float("nan")}, "scale"),
     ({"num_classes": 2}, "num_classes")],
)  # fmt: skip
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        H.HeteroSpec(**kwargs)


# --------------------------------------------------------------------------- tasks
def test_tasks_relabel_the_digits():
    y = torch.arange(10)
    assert H.task_labels(y, "parity").tolist() == [0, 1] * 5
    assert H.task_labels(y, "complement").tolist() == list(range(9, -1, -1))
    assert H.task_labels(y, "high").tolist() == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="task='colour'"):
        H.task_labels(y, "colour")


def test_task_clients_are_task_groups_of_every_size():
    clients, specs, groups = H.task_clients(DATA, train_size=30, seed=1)
    assert len(clients) == 18 and groups == [g for g in range(3) for _ in range(6)]
    assert [specs[c.client_id].label for c in clients[:3]] == ["32x2", "64x3", "128x4"]
    assert all(len(c.train) == 30 and len(c.test) > 0 for c in clients)
    parity = [c for c, g in zip(clients, groups) if g == 1]
    assert all(set(c.train.y.tolist()) <= {0, 1} for c in parity)
    with pytest.raises(ValueError, match="sizes="):
        H.task_clients(DATA, sizes=("tiny",))


# --------------------------------------------------------------------------- RELA
def test_relevance_is_symmetric_with_a_unit_diagonal_even_with_dead_columns():
    v = torch.randn(5, 10, 6)
    v[:, :, 2] = 0  # a unit the anchor never uses
    s = H.relevance(v)
    torch.testing.assert_close(s, s.T)
    torch.testing.assert_close(s.diagonal(), torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="all zero"):
        H.relevance(torch.zeros(2, 10, 3))


def test_a_column_of_rounding_residue_counts_as_dead():
    """A dead unit's column is not exactly zero after floating-point sums (norms ~1e-14 seen):
    it must not count as a live column, or it shifts the similarity (by up to 0.083 seen)."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(4, 10, 6, generator=gen, dtype=torch.float64)
    v[:, :, 2] = 0
    residue = v.clone()
    residue[:2, :, 2] = 1e-15 * torch.randn(2, 10, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(H.relevance(residue), H.relevance(v))
    # with no tolerance the residue counts as a direction, and the similarity moves
    assert not torch.allclose(H.relevance(residue, tol=0.0), H.relevance(v), atol=1e-3)
    with pytest.raises(ValueError, match=r"tol=1.5 must lie in \[0, 1\)"):
        H.relevance(v, tol=1.5)


def test_rela_rows_sum_to_one_with_zero_self_weight():
    s = H.relevance(torch.randn(6, 10, 4))
    for t in (0.05, 0.5, 5.0, math.inf):
        w = H.rela_weights(s, t)
        torch.testing.assert_close(w.sum(1), torch.ones(6, dtype=torch.float64))
        assert (w.diagonal() == 0).all() and (w >= 0).all()


def test_identical_task_vectors_give_uniform_weights():
    w = H.rela_weights(H.relevance(torch.randn(1, 10, 4).repeat(5, 1, 1)), 0.5)
    expected = (1 - torch.eye(5, dtype=torch.float64)) / 4
    torch.testing.assert_close(w, expected)


def test_a_small_temperature_concentrates_on_the_most_similar_client():
    # seeded: on 2.1% of 2,000 draws a client's two most similar peers lie within ~5e-4 of
    # each other, and no softmax at T=1e-4 can then give one of them 0.99
    s = H.relevance(torch.randn(6, 10, 4, generator=torch.Generator().manual_seed(3)))
    w = H.rela_weights(s, 1e-4)
    best = s.masked_fill(torch.eye(6, dtype=torch.bool), -2).argmax(1)
    torch.testing.assert_close(w.argmax(1), best)
    assert (w.max(1).values > 0.99).all()
    with pytest.raises(ValueError, match="temperature=0"):
        H.rela_weights(s, 0)


def test_peers_restrict_the_softmax_and_a_row_without_peers_is_empty():
    s = H.relevance(torch.randn(4, 10, 4))
    peers = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    w = H.rela_weights(s, 0.5, peers=peers)
    torch.testing.assert_close(w[0], torch.tensor([0, 1, 0, 0], dtype=torch.float64))
    assert w[3].sum() == 0


def test_task_vectors_recover_the_task_groups_until_noise_drowns_them():
    # Measured with 18 clients (3 tasks x 6), alpha 5, 5 rounds of 64-sample batches, on the
    # 5,000 digits over seeds 0-4: ARI 1.00 for every seed without noise; with noise std 3
    # (the task vectors' RMS is about 1) 0.28 on average, at most 0.40.
    data = H.tower_features(fm.data.digits(5000, modalities=("image",), progress=False))
    clean, noisy = [], []
    for seed in (0, 1, 2):
        clients, _, groups = H.task_clients(data, seed=seed)
        for noise, out in ((0.0, clean), (3.0, noisy)):
            vectors = H.client_task_vectors(clients, noise=noise, seed=seed)
            out.append(H.group_recovery(H.relevance(vectors), groups))
    assert min(clean) > 0.9
    assert np.mean(noisy) < 0.6


def test_task_vector_has_the_truncated_shape_and_checks_its_arguments():
    x, y = DATA.modalities["image"][:64], DATA.y[:64]
    assert H.task_vector(x, y).shape == (10, 13)  # ceil(0.4 * 32) columns
    assert H.task_vector(x, y, keep=1.0).shape == (10, 32)
    with pytest.raises(ValueError, match="keep=0"):
        H.task_vector(x, y, keep=0)
    with pytest.raises(ValueError, match="noise=-1"):
        H.TaskVector(noise=-1)


# --------------------------------------------------------------------------- the server
class _Update:
    def __init__(self, cid, state, vector):
        self.client_id, self.state, self.payload = cid, state, {"task_vector": vector}


def _upload(model: torch.nn.Module) -> dict:
    keys = ("p_local", "q_local", "a_local", "b_local")
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith(keys)}


def test_p_and_q_from_different_widths_average_and_load_back_and_a_b_never_travel():
    sizes = ["small", "medium", "large"]
    models = [H.SIZES[s].build() for s in sizes]
    updates = []
    for i, m in enumerate(models):
        state = _upload(m)
        for k in state:
            if k.endswith(("p_local", "q_local")):
                state[k] = torch.full_like(state[k], float(i + 1))
        updates.append(_Update(i, state, torch.randn(10, 13)))
    assert not any(k.endswith((".a", ".b")) for u in updates for k in u.state)
    rela = H.RELA(temperature=math.inf)  # uniform: each client gets the mean of the other two
    rela.setup({}, [0, 1, 2])
    rela.aggregate(1, {}, updates)
    for i, m in enumerate(models):
        served = rela.message(i, {})
        others = np.mean([j + 1 for j in range(3) if j != i])
        pq = {k: v for k, v in served.items() if k.endswith(("p_global", "q_global"))}
        assert len(pq) == 4  # P and Q of both blocks, from the other sizes
        for v in pq.values():
            torch.testing.assert_close(v, torch.full_like(v, others))
        # dual-LoRA adapters only travel within a size: nobody else has this one's shapes
        assert not any(k.endswith(("a_global", "b_global")) for k in served)
        missing, unexpected = m.load_state_dict(served, strict=False)
        assert not unexpected


def test_p_q_sharing_switched_off_mixes_within_a_size_only():
    models = [H.SIZES[s].build() for s in ("small", "small", "large")]
    updates = [_Update(i, _upload(m), torch.randn(10, 13)) for i, m in enumerate(models)]
    rela = H.RELA(temperature=0.5, share_pq=False)
    rela.setup({}, [0, 1, 2])
    rela.aggregate(1, {}, updates)
    assert rela.message(2, {}) == {}  # the only large client has no peer
    assert any(k.endswith("p_global") for k in rela.message(0, {}))


def test_federated_run_with_three_sizes_trains_every_client_and_resumes_exactly(tmp_path):
    clients, specs, groups = H.task_clients(DATA, sizes=("small", "medium", "large"),
                                            train_size=30, seed=0)  # fmt: skip
    recipe = H.mosaic(specs)
    sim = Simulation(clients, *recipe, seed=0, progress=False)
    sim.run(2)
    sim.save(tmp_path / "run")
    sim.run(1)
    again = Simulation.resume(tmp_path / "run", clients, *H.mosaic(specs), progress=False)
    again.run(1)
    a = sim.history.df.query("split == 'personal'")["value"].to_numpy()
    b = again.history.df.query("split == 'personal'")["value"].to_numpy()
    np.testing.assert_allclose(a, b)
    w = sim.strategy.weights
    assert w.shape == (9, 9) and (w.diagonal() == 0).all()
    by_size = H.accuracy_by_size(sim.history, specs)
    assert list(by_size) == ["32x2", "64x3", "128x4"]
    served = sim.served_model(0)
    assert served.spec == specs[0]


def test_per_client_specs_need_a_personalised_strategy():
    clients, specs, _ = H.task_clients(DATA, sizes=("small", "large"), train_size=20, seed=0)
    trainer = H.local_only(specs).trainer
    with pytest.raises(ValueError, match="personalised strategy"):
        Simulation(clients, specs, trainer, FedAvg(), progress=False)
    with pytest.raises(ValueError, match="no entry for clients"):
        Simulation(clients, {0: specs[0]}, trainer, H.RELA(), progress=False)


# --------------------------------------------------------------------------- diagnostics
def test_frame_agreement_is_one_for_the_anchor_and_high_for_the_first_block():
    small = H.frame_agreement(H.SIZES["small"])
    assert list(small) == ["first block reads", "first block writes", "head block reads"]
    assert all(v == pytest.approx(1.0) for v in small.values())
    large = H.frame_agreement(H.SIZES["large"], DATA.modalities["image"])
    assert large["first block reads"] > 0.999  # it reads the same tower features
    # measured on MNIST: writes 0.92, head reads 0.75 (medium: 0.85, 0.78)
    assert 0.6 < large["head block reads"] < 1.0 and 0.6 < large["first block writes"] < 1.0


def test_forced_gate_sets_every_gate_and_restores_them():
    net = H.SIZES["medium"].build().eval()
    x = DATA.modalities["image"][:8]
    with H.forced_gate(net, 1.0):
        assert all(float(m.gate(x).min()) == 1.0 for m in net.layers)
    assert all(torch.allclose(m.gate(x), torch.full((8, 1), 0.5)) for m in net.layers)
    with pytest.raises(ValueError, match="value=2"):
        with H.forced_gate(net, 2):
            pass


def test_pq_transfer_diagonal_is_each_size_on_its_own():
    # This quick version (200 samples, 100 steps) measured over seeds 0-4: diagonal 0.79-0.86,
    # no P/Q 0.17-0.19. (500 samples, 300 steps: diagonal 0.83-0.86, off it 0.02-0.58.)
    table = H.pq_transfer(DATA, "parity", n_train=200, steps=100, seed=0)
    assert list(table.index) == ["no P/Q", "32x2", "64x3", "128x4"]
    assert list(table.columns) == ["32x2", "64x3", "128x4"]
    assert (table.loc["no P/Q"] < 0.3).all()  # the digit classifier answering parity: 0.15-0.17
    diagonal = np.diag(table.values[1:])
    assert diagonal.min() > 0.7  # each size learns parity through its own P/Q
    with pytest.raises(ValueError, match="n_train=2000"):
        H.pq_transfer(DATA, "parity", n_train=2000)


def random_frames(spec: H.HeteroSpec) -> list[dict]:
    """Seeded random orthonormal frames for every block of ``spec``, gains 0.5 and 3."""
    dims = {0: (H.base.IN_DIM, spec.width), 1: (spec.width, spec.num_classes)}
    return [{"a": orthonormal(spec.rank, dims[k][0], seed=k),
             "b": orthonormal(spec.rank, dims[k][1], seed=10 + k).T,
             "gain_in": 0.5, "gain_out": 3.0} for k in range(2)]  # fmt: skip


def test_a_custom_alignment_is_used_by_the_models_and_by_pq_transfer():
    spec = H.SIZES["medium"]
    blocks = [m for m in spec.build(random_frames).layers if isinstance(m, H.CoLoRALinear)]
    defaults = [m for m in spec.build().layers if isinstance(m, H.CoLoRALinear)]
    for layer, default, frame, aligned in zip(
        blocks, defaults, random_frames(spec), H.align_frames(spec)
    ):
        assert torch.equal(layer.a, frame["a"]) and torch.equal(layer.b, frame["b"])
        assert (layer.gain_in, layer.gain_out) == (0.5, 3.0)
        assert torch.equal(default.a, aligned["a"])  # no align: align_frames, as before
    twin = H.without_branch(spec.build(random_frames), "global")
    assert [m.gain_out for m in twin.layers if isinstance(m, H.CoLoRALinear)] == [3.0, 3.0]

    calls = []

    def counted(s):
        calls.append(s.label)
        return random_frames(s)

    kwargs = {"n_train": 200, "steps": 20, "seed": 0}
    custom = H.pq_transfer(DATA, "parity", align=counted, **kwargs)
    default = H.pq_transfer(DATA, "parity", **kwargs)
    assert sorted(calls) == ["128x4", "32x2", "64x3"]  # once per size
    # empty adapters do not read the frames: the first row is the same; trained P/Q do
    assert custom.loc["no P/Q"].equals(default.loc["no P/Q"])
    assert not np.allclose(custom.values[1:], default.values[1:])
    assert custom.equals(H.pq_transfer(DATA, "parity", align=random_frames, **kwargs))


def test_a_bad_alignment_is_refused_naming_align():
    with pytest.raises(ValueError, match="align='procrustes'"):
        H.SIZES["small"].build("procrustes")
    with pytest.raises(ValueError, match="align=3 must be None"):
        H.pq_transfer(DATA, "parity", align=3)
    with pytest.raises(ValueError, match="align=.*list of 2 dicts"):
        H.SIZES["small"].build(lambda spec: random_frames(spec)[:1])
    wrong = random_frames(H.SIZES["small"])  # frames of width 32 for a width-64 model
    with pytest.raises(ValueError, match=r"align=.*needs a \(8, 64\)"):
        H.SIZES["medium"].build(lambda spec: wrong)
    with pytest.raises(ValueError, match="align=.*'scale'"):
        H.SIZES["small"].build(lambda spec: [{**f, "scale": 2.0} for f in wrong])


def test_without_branch_silences_one_branch_and_keeps_the_rest():
    net = H.SIZES["medium"].build()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("p_global", "b_global", "p_local", "b_local")):
                p.normal_()
    x = DATA.modalities["image"][:16]
    net.eval()
    for branch, other in (("global", "local"), ("local", "global")):
        twin = H.without_branch(net, branch).eval()
        state = twin.state_dict()
        assert all(state[k].abs().sum() == 0 for k in state if k.endswith(f"p_{branch}"))
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items() if other in k)
        assert not torch.allclose(twin({"image": x}), net({"image": x}))
    with pytest.raises(ValueError, match="branch='both'"):
        H.without_branch(net, "both")


def test_the_readme_table_script_runs_in_quick_mode():
    from benchmarks import hetero as bench

    out = bench.main(["--quick"])
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines()}
    assert out.splitlines()[0].startswith("| task vectors from | noise 0 |")
    # The quick run's numbers (1 seed, 2 rounds, 2,000 digits; accuracy: the mean of both
    # rounds), measured when written; the runs are deterministic on one CPU, and 0.02 allows a
    # few test samples either way. One record per CPU measured (tests/known.py): across CPUs
    # rounding alone moved local-only's largest size by 0.032.
    known = {
        "alpha 5, 50 samples": {"A": [0.544], "B": [0.544]},
        "local only": {"A": [0.411, 0.411, 0.482, 0.435], "B": [0.393, 0.418, 0.450, 0.420]},
        "RELA, T 0.5": {"A": [0.398, 0.410, 0.461, 0.423], "B": [0.412, 0.425, 0.447, 0.428]},
    }
    for name, values in known.items():
        numbers = [float(v) for v in rows[name].strip("| ").split(" | ")[1:]]
        assert_matches_a_record(name, numbers, values, tol=0.02)
    # "all sizes" is the mean over every client; each size has as many clients here, so it is
    # also the mean of the three size columns
    for name in ("local only", "RELA, T 0.5"):
        numbers = [float(v) for v in rows[name].strip("| ").split(" | ")[1:]]
        assert numbers[3] == pytest.approx(sum(numbers[:3]) / 3, abs=0.002)


def test_the_base_models_are_trained_once_and_read_back_exactly(tmp_cache):
    H.base._pretrained.cache_clear()
    try:
        trained = H.base._pretrained(32, 2)  # trains, and writes one file
        assert len(list(tmp_cache.glob("hetero-base-*.safetensors"))) == 1
        H.base._pretrained.cache_clear()
        read = H.base._pretrained(32, 2)  # a new process would do this: read, not train
        for a, b in zip([*trained["layers"], trained["head"]], [*read["layers"], read["head"]]):
            for key in ("weight", "bias"):
                assert torch.equal(a[key], b[key])
    finally:
        H.base._pretrained.cache_clear()  # later tests read the default cache again


def test_the_penultimate_task_vector_is_autograds_weight_gradient_with_its_first_rows_kept():
    # FedMosaic's code: d(mean CE)/d(penultimate weight), through the frozen head, first 40%
    # of the rows (output units); checked here against autograd on the same anchor
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 64, generator=gen), torch.randint(0, 10, (40,), generator=gen)
    layers, head = H.rela._anchor_model()
    weight = layers[-1].weight
    with torch.enable_grad():
        out = x
        for layer in layers:
            out = torch.relu(layer(out))
        loss = torch.nn.functional.cross_entropy(head(out), y)
        (grad,) = torch.autograd.grad(loss, weight)
    got = H.task_vector(x, y, layer="penultimate")
    assert got.shape == (12, 32)  # int(0.4 * 32) rows, every input column
    torch.testing.assert_close(got, grad[:12], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="layer='first'"):
        H.task_vector(x, y, layer="first")


# --------------------------------------------------------------------- RELA alone (part 1)
def test_the_conflicting_tasks_never_agree_on_a_digit():
    y = torch.arange(10)
    labels = [H.task_labels(y, t) for t in H.CONFLICTING]
    assert labels[2].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not (labels[i] == labels[j]).any(), H.CONFLICTING[i : j + 1]


def test_the_oracle_mixes_only_within_the_true_groups_and_uniformly():
    clients, specs, groups = H.task_clients(DATA, tasks=H.CONFLICTING, sizes=("small",) * 3,
                                            train_size=20, seed=0)  # fmt: skip
    group_of = {c.client_id: g for c, g in zip(clients, groups)}
    recipe = H.ALONE[H.ORACLE](specs, group_of)
    sim = Simulation(clients, *recipe, seed=0, progress=False)
    sim.run(1)
    g = torch.tensor([group_of[k] for k in sim.strategy.client_ids])
    same = (g[:, None] == g[None, :]) & ~torch.eye(len(g), dtype=torch.bool)
    expected = same.double() / same.sum(1, keepdim=True)  # 1/2 on the two others of the task
    torch.testing.assert_close(sim.strategy.weights, expected)
    assert "groups of 3" in repr(sim.strategy)
    with pytest.raises(ValueError, match=r"groups has no group for clients \[8\]"):
        H.RELA(groups={k: v for k, v in group_of.items() if k != 8}).aggregate(
            1, {}, [F.ClientUpdate(k, {}, 1, {}, {"task_vector": torch.randn(10, 13)})
                    for k in range(9)])  # fmt: skip


def test_served_accuracy_scores_the_global_branch_alone():
    clients, specs, groups = H.task_clients(DATA, tasks=H.CONFLICTING, sizes=("small",) * 3,
                                            train_size=20, seed=0)  # fmt: skip
    sim = Simulation(clients, *H.mosaic(specs, temperature=0.05), seed=0, progress=False)
    assert H.served_accuracy(sim.clients, sim.strategy) == {}  # nothing served yet
    sim.run(1)
    scores = H.served_accuracy(sim.clients, sim.strategy)
    assert sorted(scores) == [c.client_id for c in clients]
    # the same as loading the served branch by hand and gating the local branch off
    client = sim.clients[4]
    model = H.HeteroNet(client.model.spec)
    model.load_state_dict(client.model.state_dict())
    model.load_state_dict(sim.strategy.served[4], strict=False)
    with H.forced_gate(model.eval(), 1.0):
        assert scores[4] == evaluate(model, client.data.test)["accuracy"]
    with pytest.raises(ValueError, match="FedAvg serves no per-client state"):
        H.served_accuracy(sim.clients, F.FedAvg())


def test_rela_alone_refuses_bad_settings():
    with pytest.raises(ValueError, match="size='huge' must be one of"):
        H.rela_alone(DATA, 10, size="huge")
    with pytest.raises(ValueError, match="per_task=1 must be an integer >= 2"):
        H.rela_alone(DATA, 10, per_task=1)
    with pytest.raises(ValueError, match="n_train=0 must be an integer >= 1"):
        H.rela_alone(DATA, 0)
    with pytest.raises(ValueError, match="last=5 must be <= rounds=2"):
        H.rela_alone(DATA, 10, rounds=2, last=5)
    with pytest.raises(ValueError, match=r"methods \['FedAvg'\] are not among"):
        H.rela_alone(DATA, 10, methods=["FedAvg"])


# ------------------------------------------------------------ a family that grows (part 2)
def test_a_grown_base_computes_what_the_smaller_one_did():
    small = H.base._pretrained(32, 2)
    grown = H.grow(small, 64, 3)
    x = DATA.modalities["image"][:50]
    old_layers, old_head = H.base.base_layers(32, 2)
    new_layers, new_head = H.base.base_layers(64, 3)
    for layer, s in zip([*old_layers, old_head], [*small["layers"], small["head"]]):
        layer.load_state_dict(s)
    for layer, s in zip([*new_layers, new_head], [*grown["layers"], grown["head"]]):
        layer.load_state_dict(s)
    with torch.no_grad():
        before = H.base.forward_base(old_layers, x, head=old_head)
        after = H.base.forward_base(new_layers, x, head=new_head)
    # the new units' weights are 1e-3 noise, so the outputs agree up to that much
    torch.testing.assert_close(after, before, atol=0.05, rtol=0.01)
    with pytest.raises(ValueError, match="cannot grow 64x3 into 32x2"):
        H.grow(grown, 32, 2)


def test_families_name_their_sizes_and_refuse_others():
    grown = H.family_sizes("grown")
    assert [s.label for s in grown.values()] == ["32x2", "64x3", "128x4"]
    assert all(s.family == "grown" for s in grown.values())
    # the smallest size is the same model in both families; the larger ones differ
    small_a, small_b = H.SIZES["small"].build(), grown["small"].build()
    assert all(torch.equal(a.base.weight, b.base.weight)
               for a, b in zip(small_a.layers, small_b.layers))  # fmt: skip
    large_a, large_b = H.SIZES["large"].build(), grown["large"].build()
    assert not torch.equal(large_a.layers[0].base.weight, large_b.layers[0].base.weight)
    with pytest.raises(ValueError, match="family='distilled' must be one of"):
        H.family_sizes("distilled")
    with pytest.raises(ValueError, match="family='x' must be one of"):
        H.HeteroSpec(family="x")
    _, specs, _ = H.task_clients(DATA, sizes=("large",), family="grown", train_size=10)
    assert all(s.family == "grown" for s in specs.values())


def test_across_sizes_gives_a_row_per_method_and_size():
    rows = H.across_sizes(DATA, 10, rounds=1, last=1, methods=["local only", "RELA, T 0.05"])
    assert [(r["method"], r["size"]) for r in rows] == [
        (m, s) for m in ("local only", "RELA, T 0.05") for s in ("32x2", "64x3", "128x4")
    ]
    assert all(math.isnan(r["served"]) for r in rows[:3])
    assert all(0 <= r["served"] <= 1 and r["family"] == "grown" for r in rows[3:])
    with pytest.raises(ValueError, match="per_size=1 must be an integer >= 2"):
        H.across_sizes(DATA, 10, per_size=1)


def test_fitted_frames_are_orthonormal_keep_the_shared_spaces_and_build():
    large = H.family_sizes("grown")["large"]
    frames, anchor = H.fitted_frames(large), H.align_frames(H.family_sizes("grown")["small"])
    assert H.fitted_frames(H.family_sizes("grown")["small"]) == anchor  # the anchor's own
    r = large.rank
    for frame in frames:
        torch.testing.assert_close(frame["a"] @ frame["a"].T, torch.eye(r), atol=1e-4, rtol=0)
        torch.testing.assert_close(frame["b"].T @ frame["b"], torch.eye(r), atol=1e-4, rtol=0)
    # the tower features (first block's input) and the logits (head's output) are shared
    torch.testing.assert_close(frames[0]["a"], anchor[0]["a"])
    torch.testing.assert_close(frames[-1]["b"], anchor[-1]["b"])
    net = large.build(align=H.fitted_frames)
    assert net({"image": DATA.modalities["image"][:4]}).shape == (4, 10)
