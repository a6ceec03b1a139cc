"""A real Flower deployment on loopback (127.0.0.1): one SuperLink and two SuperNodes as
separate processes, each node loading only its own client's data file, ``flwr run`` of a Flower
App built on ``fm.flower``; the result equals the kit engine's for the same seed.

The strategy is ALA: its learned mixing weights are private client state, which the SuperNode
keeps in ``Context.state`` between messages (each message runs in a fresh ClientApp process).
Insecure mode (no TLS) on loopback only: ``examples/flower_app/README.md`` shows TLS.
Every process the test starts is stopped by its process group, also when the test fails.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.federated import FedAvg, LocalTrainer, Simulation
from fedlab_mm.personalization import ALA

pytest.importorskip("flwr")
pytestmark = [pytest.mark.deployment, pytest.mark.flower_runtime]

NODES, ROUNDS, SEED = 2, 2, 3
BIN = Path(sys.executable).parent

APP = '''
import torch

import fedlab_mm as fm
from fedlab_mm.federated import FedAvg, LocalTrainer, Recipe
from fedlab_mm.flower import client_app, server_app
from fedlab_mm.personalization import ALA

spec = fm.models.ModelSpec(**{spec!r})
recipe = Recipe(spec, LocalTrainer(init=ALA()), FedAvg())


def load(node_config):
    """This node's own data: one file, named in its node config."""
    return torch.load(node_config["data-path"], weights_only=False)


client = client_app(load, recipe, seed={seed})
server = server_app(recipe, {nodes}, {rounds}, seed={seed}, out={out!r}, timeout=240.0)
'''

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "kit-deployment-test"
version = "0.1.0"
description = "fedlab_mm's deployment test"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedlab-mm"

[tool.flwr.app.components]
serverapp = "kitapp:server"
clientapp = "kitapp:client"

[tool.flwr.app.config]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc, timeout: float = 60.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture
def started():
    """Processes the test starts; each in its own process group, all stopped at the end."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_deployment_on_loopback_gives_the_kit_engines_numbers(tmp_path, started):
    ds = fm.data.synthetic(n_samples=300, seed=0)
    clients = fm.partition.dirichlet(ds, NODES, alpha=0.5, seed=0).clients(ds, seed=0)
    spec = fm.models.ModelSpec.from_dataset(ds, d=16, hidden=32)
    for c in clients:  # each node gets one file: its own client's data, nothing else
        torch.save(c, tmp_path / f"client-{c.client_id}.pt")
    app, out, home, logs = (tmp_path / d for d in ("app", "out", "flwr-home", "logs"))
    for d in (app, home, logs):
        d.mkdir()
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "kitapp.py").write_text(textwrap.dedent(APP.format(
        spec=spec.to_dict(), seed=SEED, nodes=NODES, rounds=ROUNDS, out=str(out))))  # fmt: skip
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "kit"\n\n[superlink.kit]\naddress = "127.0.0.1:{port}"\n'
        "insecure = true\n"
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_HOME": str(home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "HF_HUB_OFFLINE": "1", "FEDLAB_MM_THREADS": "1"}  # fmt: skip

    def start(name, *args):
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        command = [str(BIN / args[0]), *args[1:]]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        started.append(proc)
        return proc

    link = start("superlink", "flower-superlink", "--insecure", "--port", str(port),
                 "--database", str(tmp_path / "state.db"))  # fmt: skip
    _wait_for_port(port, link)
    for k, c in enumerate(clients):
        start(f"node{k}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
              "--port", str(_free_port()),
              "--node-config", f'data-path="{tmp_path / f"client-{c.client_id}.pt"}"')  # fmt: skip
    t0 = time.perf_counter()
    run = subprocess.run([str(BIN / "flwr"), "run", ".", "kit", "--stream"], cwd=app, env=env,
                         capture_output=True, text=True, timeout=420)  # fmt: skip
    seconds = time.perf_counter() - t0
    logs_text = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, logs_text
    assert (out / "global.safetensors").exists(), logs_text

    from safetensors.torch import load_file

    saved = json.loads((out / "history.json").read_text())
    tensors = load_file(out / "global.safetensors")
    state = {k: tensors[k] for k in saved["keys"]}
    kit = Simulation(clients, spec, LocalTrainer(init=ALA()), FedAvg(), seed=SEED,
                     progress=False)  # fmt: skip
    kit.run(ROUNDS)
    assert list(state) == list(kit.global_state)
    for key, value in kit.global_state.items():  # same seeds; only float rounding differs
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=1e-4)
    df = kit.history.df
    personal = df[(df.split == "personal") & (df.metric == "accuracy")]
    rows = {(r["round"], r["client"]): r for r in saved["rows"]}
    assert len(rows) == NODES * ROUNDS
    for (rnd, client), value in personal.set_index(["round", "client"]).value.items():
        assert rows[(rnd, client)]["personal-accuracy"] == pytest.approx(value, abs=1e-6)
    print(f"deployment: {NODES} SuperNodes, {ROUNDS} rounds, flwr run took {seconds:.0f} s")
