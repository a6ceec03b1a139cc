"""The sliders in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

For notebooks 01 and 03: start JupyterLab on 127.0.0.1 with a token, open the notebook, run all
cells, check that no cell raised, move the first slider with the keyboard and check that the
figure under it changed. A screenshot of each notebook is saved in ``build/test-artifacts/``.
The notebooks run from a temporary copy (JupyterLab autosaves), in smoke mode.

The browser is found by ``tools/browser.py`` (``FEDLAB_MM_BROWSER``, Debian's chromium, PATH,
Playwright's). Without one, ``test_a_browser_is_found`` fails with the fix and the notebook
tests are skipped: one failure, and every other test of the suite still runs.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import browser as _browser  # noqa: E402 - tools/ is not a package

BROWSER, WHERE = _browser.find()
ARTIFACTS = ROOT / "build" / "test-artifacts"
NOTEBOOKS = ["01_partitioning.ipynb", "03_personalization_weights.ipynb"]

needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no browser: see test_a_browser_is_found"
)


def test_a_browser_is_found():
    """``make setup`` installs one; this is the one test that says so when it could not."""
    assert BROWSER is not None, WHERE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks; yields its base URL and token."""
    root = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    # render every cell (JupyterLab 4 otherwise renders only the cells in view)
    settings = root / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    lab_bin = Path(sys.executable).with_name("jupyter-lab")  # its PID is the server's
    cmd = [str(lab_bin), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabServerApp.user_settings_dir={root / 'settings'}"]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "FEDLAB_MM_SMOKE": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MPLBACKEND", None)  # the kernel draws inline, as for a student
    log = open(root / "lab.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError((root / "lab.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        else:
            raise RuntimeError("JupyterLab did not answer within 60 s")
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_ready(page, notebook: str, timeout: float = 120.0) -> None:
    """Until all the notebook's cells are on the page and its kernel is idle.

    JupyterLab first shows a one-cell placeholder with no kernel; "Run All" clicked then runs
    the placeholder, not the notebook.
    """
    n_cells = len(json.loads((ROOT / "notebooks" / notebook).read_text())["cells"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cells = page.locator(".jp-Notebook .jp-Cell").count()
        status = " ".join(page.locator(".jp-StatusBar-Widget").all_inner_texts())
        if cells == n_cells and "| Idle" in status:
            return
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout} s: {cells}/{n_cells} cells, {status!r}")


def _wait_all_run(page, timeout: float = 120.0) -> None:
    """Until every code cell shows an execution count and none shows ``[*]``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if prompts and all(p.strip("[]: \n").isdigit() for p in prompts):
            return
        time.sleep(0.5)
    raise AssertionError(f"cells still running after {timeout} s: {prompts}")


def _images(cell) -> list[str]:
    return [img.get_attribute("src") or "" for img in cell.locator("img").all()]


def test_the_browser_variable_wins_and_a_wrong_path_is_reported(monkeypatch):
    monkeypatch.setenv(_browser.ENV, "/nonexistent/chromium")
    path, why = _browser.find()
    assert path is None and "FEDLAB_MM_BROWSER='/nonexistent/chromium'" in why
    assert "apt-get install -y chromium" in why  # the fix is in the message
    monkeypatch.setenv(_browser.ENV, sys.executable)  # any executable file is taken as given
    assert _browser.find()[0] == Path(sys.executable)


@pytest.mark.parametrize(
    ("root", "sudo", "first"),
    [(True, False, "apt-get"), (False, True, "sudo"), (False, False, sys.executable)],
)
def test_install_routes_follow_root_and_sudo(monkeypatch, root, sudo, first):
    tools = {"apt-get": "/usr/bin/apt-get", "sudo": "/usr/bin/sudo" if sudo else None}
    monkeypatch.setattr(_browser.shutil, "which", tools.get)
    monkeypatch.setattr(_browser.os, "geteuid", lambda: 0 if root else 1000)
    routes = _browser._attempts()
    assert routes[0][0][0] == first
    if sudo and not root:
        assert routes[0][0][:2] == ["sudo", "-n"]  # never a password prompt
    assert routes[-1] == [[sys.executable, "-m", "playwright", "install", "chromium"]]


def test_install_that_fails_everywhere_says_what_to_run_and_does_not_raise(monkeypatch, capsys):
    monkeypatch.delenv(_browser.ENV, raising=False)
    monkeypatch.setattr(_browser, "find", lambda: (None, _browser.HOW_TO_FIX))
    tried = []
    monkeypatch.setattr(_browser, "_run", lambda cmd: tried.append(cmd) or False)
    assert _browser.install() is None
    assert tried and capsys.readouterr().out.strip().endswith(_browser.HOW_TO_FIX)


@needs_browser
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_run_all_then_move_a_slider_changes_the_figure(lab, notebook):
    from playwright.sync_api import sync_playwright

    url, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(BROWSER), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # a workspace of its own, reset: only this notebook is open
            page.goto(f"{url}/lab/workspaces/{notebook[:2]}/tree/{notebook}?reset&token={token}")
            _wait_ready(page, notebook)
            page.locator(".jp-Notebook").first.click()  # focus the notebook, not the file browser
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            _wait_all_run(page)
            errors = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts()
                      if "Traceback" in t or "Cell In[" in t]  # fmt: skip
            assert not errors, errors[0][:2000]

            handle = page.locator(".widget-slider .noUi-handle").first
            handle.scroll_into_view_if_needed()
            cell = handle.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')][1]")
            before = _images(cell)
            assert before, "no figure under the first slider"
            handle.focus()  # one step towards the side the slider has room on
            at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            deadline = time.monotonic() + 120
            while _images(cell) in ([], before) and time.monotonic() < deadline:
                time.sleep(0.5)
            after = _images(cell)
            page.screenshot(path=str(ARTIFACTS / f"browser_{notebook[:2]}.png"), full_page=False)
            assert after and after != before, "moving the slider did not change the figure"
        finally:
            browser.close()
