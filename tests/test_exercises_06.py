"""Tested solutions of the exercises of notebook 06 (CKA aggregation), at smoke scale.

At this scale (900 samples, 2 rounds) the clients' models are still close to their common
start: every entry of the CKA graph is close to 1 and the global model is at chance. The tests
assert what the graph and its weights do, which is stable, and quote the numbers in comments
(seeds 0-4: data, partition, corruption and run).
"""

import torch

import fedlab_mm as fm
from fedlab_mm.cka import linear_cka
from fedlab_mm.cka_graph import CKAGraph, importance, probe_representations
from fedlab_mm.federated import LocalTrainer, Simulation

N_SAMPLES = 900  # the notebook's smoke-mode sizes
ROUNDS = 2
NUM_CLIENTS, PROBE = 10, 60
BAD = [0, 1, 2]  # the noisy clients of "The server's graph"

DS = fm.data.synthetic(n_samples=N_SAMPLES, seed=0)
REST, SERVER = fm.partition.holdout(DS, 1 / 6, seed=0)
PROBE_SET, SERVER_TEST = SERVER.subset(slice(0, PROBE)), SERVER.subset(slice(PROBE, None))
CLIENTS = fm.partition.iid(REST, NUM_CLIENTS, seed=0).clients(REST, seed=0)
CORRUPTED = fm.partition.corrupt_clients(CLIENTS, BAD, kind="noise", noise=10.0, seed=0)
SPEC = fm.models.ModelSpec.from_dataset(DS, d=32, hidden=64)


def run(strategy):
    """The notebook's run with three noisy clients and a CKA-graph server."""
    sim = Simulation(
        CORRUPTED,
        SPEC,
        LocalTrainer(),
        strategy,
        seed=0,
        global_test=SERVER_TEST,
        progress=False,
    )
    sim.run(ROUNDS)
    return sim


def noisy_weight(strategy):
    """The noisy clients' share of the last round's aggregate."""
    ids = strategy.client_ids
    return float(sum(strategy.weights[ids.index(k)] for k in BAD))


def noisy_weigh_least(strategy):
    """True if every noisy client got a smaller weight than every other client."""
    ids = strategy.client_ids
    noisy = [float(strategy.weights[ids.index(k)]) for k in BAD]
    others = [float(w) for k, w in zip(ids, strategy.weights) if k not in BAD]
    return max(noisy) < min(others)


def graph_of(models, probe):
    """The CKA graph written out: linear CKA between every two models' joint
    representations of the probe set."""
    reps = [probe_representations(model, probe) for model in models]
    graph = torch.eye(len(reps), dtype=torch.float64)
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            graph[i, j] = graph[j, i] = linear_cka(reps[i], reps[j])
    return graph


def spread(graph):
    """How far the graph is from "everyone agrees": 1 minus its mean off-diagonal entry."""
    off = ~torch.eye(len(graph), dtype=torch.bool)
    return float(1 - graph[off].mean())


def test_exercise_1_eigenvector_centrality():
    """Use `centrality="eigenvector"` instead of the degree. Do the weights of the noisy
    clients change?"""
    degree = CKAGraph(SPEC, PROBE_SET)
    run(degree)
    eigen = CKAGraph(SPEC, PROBE_SET, centrality="eigenvector")
    run(eigen)
    graph, weights = eigen.graph, eigen.weights

    # The weights are the graph's leading eigenvector, scaled to sum to 1.
    largest = torch.linalg.eigvalsh(graph)[-1]
    torch.testing.assert_close(graph @ weights, largest * weights)
    assert torch.all(weights > 0)
    # The noisy clients still weigh least (every one of them below every other client, on
    # seeds 0-4).
    assert noisy_weigh_least(eigen)
    # They barely change. On a graph whose entries are all close to 1 the leading
    # eigenvector is the degree to first order: on the same graph the two rules differed by at
    # most 1.4e-7, 1.7e-6, 3.1e-6, 1.2e-6, 2.4e-6 on seeds 0-4. The noisy clients' share was
    # 0.2995, 0.2988, 0.2986, 0.2986, 0.2980 under either rule (their sample share: 0.3).
    assert (weights - importance(graph, "degree")).abs().max() < 1e-4
    assert abs(noisy_weight(eigen) - noisy_weight(degree)) < 1e-3
    assert noisy_weight(eigen) < 0.3


def test_exercise_2_logits():
    """Compare the `"logits"` instead of the joint representation
    (`representation="logits"`)."""
    joint = CKAGraph(SPEC, PROBE_SET)
    run(joint)
    logits = CKAGraph(SPEC, PROBE_SET, representation="logits")
    sim = run(logits)

    # The graph now compares the clients' logits on the probe set (each client's model after
    # its local training is what it uploaded in the last round).
    by_hand = torch.eye(NUM_CLIENTS, dtype=torch.float64)
    with torch.no_grad():
        outputs = [
            sim.by_id[k].model.eval()(PROBE_SET.modalities, PROBE_SET.available.float())
            for k in logits.client_ids
        ]
    for i in range(NUM_CLIENTS):
        for j in range(i + 1, NUM_CLIENTS):
            by_hand[i, j] = by_hand[j, i] = linear_cka(outputs[i], outputs[j])
    torch.testing.assert_close(logits.graph, by_hand)

    # The logits set the noisy clients further apart, so they weigh less than with the joint
    # representation. Mean off-diagonal CKA, joint -> logits, seeds 0-4: 0.998 -> 0.988,
    # 0.995 -> 0.971, 0.994 -> 0.969, 0.994 -> 0.972, 0.992 -> 0.959; the noisy clients'
    # share: 0.2995 -> 0.2974, 0.2988 -> 0.2931, 0.2986 -> 0.2929, 0.2986 -> 0.2938,
    # 0.2980 -> 0.2887.
    assert spread(logits.graph) > spread(joint.graph)
    assert noisy_weight(logits) < noisy_weight(joint) - 0.001
    assert noisy_weigh_least(logits)


def test_exercise_3_probe_of_20_samples():
    """Shrink the probe set to 20 samples. What happens to the graph, and why (see the bias
    plot)?"""
    small = PROBE_SET.subset(slice(0, 20))
    strategy = CKAGraph(SPEC, small)
    sim = run(strategy)
    assert strategy.probe_size == 20
    assert strategy.client_ids == list(range(NUM_CLIENTS))  # graph row k is client k
    models = [sim.by_id[k].model for k in strategy.client_ids]
    torch.testing.assert_close(graph_of(models, small), strategy.graph)

    # Why: plain CKA is biased upwards on few samples. Two unrelated representations as wide
    # as the joint one (32) score about p / (n + p): 0.62 on 20 samples, 0.35 on 60.
    gen = torch.Generator().manual_seed(0)
    for n in (20, 60):
        scores = [
            float(linear_cka(torch.randn(n, 32, generator=gen), torch.randn(n, 32, generator=gen)))
            for _ in range(20)
        ]
        assert abs(sum(scores) / len(scores) - 32 / (n + 32)) < 0.05

    # What it does to the graph: the same uploaded models look more alike on 20 samples than
    # on 60. One 20-sample slice is noisy (on seed 2 it went the other way), so average over
    # the three disjoint slices of the 60-sample probe. 1 - mean off-diagonal CKA, 60 samples
    # against 20, seeds 0-4: 0.0022 / 0.0019, 0.0053 / 0.0042, 0.0062 / 0.0052,
    # 0.0061 / 0.0050, 0.0076 / 0.0057; the noisy clients' degree weight moved back towards
    # their 0.3 sample share: 0.2995 / 0.2996, 0.2988 / 0.2990, 0.2986 / 0.2988,
    # 0.2986 / 0.2989, 0.2980 / 0.2985.
    slices = [PROBE_SET.subset(slice(i, i + 20)) for i in range(0, PROBE, 20)]
    graphs = [graph_of(models, probe) for probe in slices]
    whole = graph_of(models, PROBE_SET)
    assert sum(spread(g) for g in graphs) / len(graphs) < spread(whole)

    def noisy_degree(graph):
        return float(importance(graph)[BAD].sum())

    assert sum(noisy_degree(g) for g in graphs) / len(graphs) > noisy_degree(whole)
