"""A real Flower deployment on loopback (127.0.0.1): one SuperLink and three SuperNodes as
separate processes, each node loading only its own client's data file, ``flwr run`` of Flower
Apps built on ``fm.flower``.

1. The stateful methods (ALA, local only, RELA, FedAlign) in one run, as a suite: each equals
   the kit engine's run for the same seed. Their private client state (learned mixing
   weights, personal models, LoRA) lives in each SuperNode's ``Context.state`` between
   messages, and every message runs in a fresh ClientApp process. (All 14 grid methods equal
   the kit engine on Flower's Ray engine too: ``test_flower.py``.)
2. A node failure drill: a SuperNode killed by the test while it holds a round-2 message. The
   SuperLink turns it into an error reply, and ``KitStrategy`` stops the run naming the node
   and its client: no hang, and no average over the other two.

Insecure mode (no TLS) on loopback only: ``examples/flower_app/README.md`` shows TLS.
Every process the test starts is stopped by its process group, also when the test fails.
"""

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from fedlab_mm.recipes import Scale
from tests.flower_check import assert_same_run, kit_run, largest_difference, views_and_recipes

pytest.importorskip("flwr")
pytestmark = [pytest.mark.deployment, pytest.mark.flower_runtime]

NODES, SEED = 3, 0
SCALE = Scale(n_samples=600, num_clients=NODES, rounds=2, epochs=1, last=1)
METHODS = ["ala", "local", "rela", "fedalign"]  # the ones whose client state matters
BIN = Path(sys.executable).parent

APP = '''
import torch

from fedlab_mm.flower import client_app, server_app
from fedlab_mm.recipes import Scale
from tests.flower_check import views_and_recipes

SCALE = Scale(**{scale!r})
# the server's side of each recipe (its strategy); the data stay on the nodes
_, recipes = views_and_recipes({methods!r}, seed={seed}, scale=SCALE)


def load(node_config):
    """This node's own data: one file, named in its node config, with each method's view."""
    return torch.load(node_config["data-path"], weights_only=False)


client = client_app(load, recipes, seed={seed})
server = server_app(recipes, {nodes}, SCALE.rounds, seed={seed}, out={out!r}, timeout=300.0)
'''

DRILL = """
import time
from pathlib import Path

from flwr.clientapp import ClientApp

from fedlab_mm.flower import client_app, server_app
from fedlab_mm.recipes import Scale
from tests.flower_check import views_and_recipes

SCALE = Scale(**{scale!r})
_, recipes = views_and_recipes(["fedavg"], seed={seed}, scale=SCALE)
kit = client_app(lambda config: torch_load(config)["fedavg"], recipes["fedavg"], seed={seed})


def torch_load(config):
    import torch

    return torch.load(config["data-path"], weights_only=False)


client = ClientApp()  # the kit's ClientApp, but the victim holds its round-2 message


@client.query()
def query(msg, context):
    return kit(msg, context)


@client.train()
def train(msg, context):
    victim = context.node_config["data-path"].endswith({victim!r})
    if victim and int(msg.content["config"]["server-round"]) == 2:
        Path({marker!r}).write_text("holding round 2")  # the test kills this node now
        time.sleep(600)
    return kit(msg, context)


@client.evaluate()
def evaluate(msg, context):
    return kit(msg, context)


server = server_app(recipes["fedavg"], {nodes}, 3, seed={seed}, out={out!r}, timeout=300.0)
"""

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


class Deployment:
    """A SuperLink and one SuperNode per client file, each process in its own group."""

    def __init__(self, root: Path, files: list[Path]) -> None:
        self.root, self.procs, self.nodes = root, [], []
        self.home, self.logs = root / "flwr-home", root / "logs"
        for d in (self.home, self.logs):
            d.mkdir()
        port = _free_port()
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "kit"\n\n[superlink.kit]\naddress = "127.0.0.1:{port}"\n'
            "insecure = true\n"
        )
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, "FLWR_HOME": str(self.home),
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "HF_HUB_OFFLINE": "1",
                    "FEDLAB_MM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(Path(__file__).parents[1])}  # fmt: skip
        link = self._start("superlink", "flower-superlink", "--insecure", "--port", str(port),
                           "--database", str(root / "state.db"))  # fmt: skip
        _wait_for_port(port, link)
        for k, file in enumerate(files):
            self.nodes.append(self._start(
                f"node{k}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
                "--port", str(_free_port()), "--node-config", f'data-path="{file}"'))  # fmt: skip

    def _start(self, name: str, *args: str):
        with open(self.logs / f"{name}.log", "w") as log:  # the child keeps its own copy
            proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def node_id(self, k: int) -> int:
        """Node ``k``'s id, as its SuperNode printed it."""
        for _ in range(300):
            found = re.search(r"SuperNode ID: (\d+)", (self.logs / f"node{k}.log").read_text())
            if found:
                return int(found.group(1))
            time.sleep(0.2)
        raise TimeoutError(f"node {k} printed no SuperNode ID")

    def run(self, app: Path, timeout: float = 600.0):
        """``flwr run`` the app in folder ``app``; its process, still running."""
        return subprocess.Popen([str(BIN / "flwr"), "run", ".", "kit", "--stream"], cwd=app,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def deployment(tmp_path):
    """Three SuperNodes, each with one file: its own client's data (every method's view of
    it), nothing else."""
    views, _ = views_and_recipes([*METHODS, "fedavg"], seed=SEED, scale=SCALE)
    files = []
    for k in range(NODES):
        mine = {name: data[k] for name, data in views.items()}  # "fedavg": for the drill
        assert {c.client_id for c in mine.values()} == {k}
        files.append(tmp_path / f"client-{k}.pt")
        torch.save(mine, files[-1])
    running = Deployment(tmp_path, files)
    yield running
    running.stop()


def _app(folder: Path, source: str) -> Path:
    folder.mkdir()
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "kitapp.py").write_text(textwrap.dedent(source))
    return folder


def _finish(proc, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"flwr run did not end in {timeout} s:\n{out[-3000:]}") from None
    return out


def test_a_deployment_gives_the_kit_engines_numbers_and_names_a_dead_node(tmp_path, deployment):
    scale = dataclasses.asdict(SCALE)
    out = tmp_path / "out"
    app = _app(tmp_path / "app", APP.format(scale=scale, methods=METHODS, seed=SEED,
                                            nodes=NODES, out=str(out)))  # fmt: skip
    t0 = time.perf_counter()
    run = deployment.run(app)
    text = _finish(run, 600)
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, text[-3000:]

    from fedlab_mm.flower import read_results

    _, recipes = views_and_recipes(METHODS, seed=SEED, scale=SCALE)
    results = read_results(out, recipes)
    report = {}
    for name in METHODS:
        state, rows = results[name]
        kit = kit_run(name, seed=SEED, scale=SCALE)
        assert_same_run(kit, state, rows)
        report[name] = (*largest_difference(kit, state, rows), round(rows.attrs["seconds"]))
    print(
        f"deployment: {NODES} SuperNodes, {SCALE.rounds} rounds, {len(METHODS)} methods, "
        f"flwr run {seconds:.0f} s; largest differences (weight, accuracy), seconds: {report}"
    )

    # The drill: node 1 holds its round-2 train message and the test kills its SuperNode.
    marker, drill_out = tmp_path / "holding", tmp_path / "drill-out"
    drill = _app(tmp_path / "drill", DRILL.format(scale=scale, seed=SEED, nodes=NODES,
                 victim="client-1.pt", marker=str(marker), out=str(drill_out)))  # fmt: skip
    victim = deployment.node_id(1)
    t0 = time.perf_counter()
    run = deployment.run(drill)
    while not marker.exists():
        assert run.poll() is None, "the drill's run ended before round 2"
        assert time.perf_counter() - t0 < 300, "round 2 never reached node 1"
        time.sleep(0.1)
    os.killpg(deployment.nodes[1].pid, signal.SIGKILL)
    killed = time.perf_counter()
    text = _finish(run, 300)
    named = (
        rf"round 2: 1 of {NODES} train replies failed: node {victim} \(client 1\): .*Unavailable"
    )
    assert re.search(named, text), text[-3000:]
    assert not (drill_out / "global.safetensors").exists()  # nothing averaged over the rest
    print(f"drill: the run stopped {time.perf_counter() - killed:.0f} s after the kill")
