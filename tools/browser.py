"""Find, or install, the Chromium that the real-browser test (tests/test_browser.py) drives.

``make setup`` runs ``python tools/browser.py --install``; the test imports :func:`find`.

Where a browser is looked for, in order:

1. ``FEDLAB_MM_BROWSER``, a path to a Chromium-like executable. When it is set it is the only
   place looked at, so a wrong path is reported instead of silently replaced.
2. ``/usr/bin/chromium`` (Debian's package).
3. ``chromium``, ``chromium-browser`` or ``google-chrome`` on ``PATH``.
4. The Chromium that ``playwright install chromium`` downloads.

How ``--install`` gets one when none is found: ``apt-get install -y chromium`` as root on
Debian/Ubuntu, the same through ``sudo -n`` (never a password prompt), then
``playwright install chromium``; when all of them fail it prints one line saying what to run,
and exits 0 so that the rest of the set-up (and of the test suite) still goes on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV = "FEDLAB_MM_BROWSER"
DEBIAN = Path("/usr/bin/chromium")
ON_PATH = ("chromium", "chromium-browser", "google-chrome")
HOW_TO_FIX = (
    "no Chromium for the browser test: run `sudo apt-get install -y chromium` (Debian/Ubuntu) "
    f"or `.venv/bin/playwright install chromium`, or set {ENV} to a Chromium executable"
)
TIMEOUT = 600  # seconds for one install attempt: a stalled download must not stall set-up


def _playwright_chromium() -> Path | None:
    """The executable ``playwright install chromium`` puts in place, if it is there."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as pw:
            path = Path(pw.chromium.executable_path)
    except Exception:  # the driver could not start: treat as "no browser"
        return None
    return path if path.is_file() else None


def find() -> tuple[Path | None, str]:
    """Return ``(path, where)`` of a usable browser, or ``(None, why)`` when there is none."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        path = Path(chosen)
        if path.is_file() and os.access(path, os.X_OK):
            return path, f"{ENV}={chosen}"
        return None, f"{ENV}={chosen!r} is not an executable file; {HOW_TO_FIX}"
    if DEBIAN.is_file():
        return DEBIAN, str(DEBIAN)
    for name in ON_PATH:
        hit = shutil.which(name)
        if hit:
            return Path(hit), f"{name} on PATH"
    path = _playwright_chromium()
    if path is not None:
        return path, "Playwright's Chromium"
    return None, HOW_TO_FIX


def _run(cmd: list[str]) -> bool:
    print("  $", " ".join(cmd), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(cmd, env=env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"  failed: {err}", flush=True)
        return False
    return done.returncode == 0


def _attempts() -> list[list[list[str]]]:
    """The install routes that apply on this machine, each a list of commands."""
    routes = []
    if shutil.which("apt-get"):
        apt = [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]]
        if os.geteuid() == 0:
            routes.append(apt)
        elif shutil.which("sudo"):
            routes.append([["sudo", "-n", *cmd] for cmd in apt])
    routes.append([[sys.executable, "-m", "playwright", "install", "chromium"]])
    return routes


def install() -> Path | None:
    """Install a browser unless one is found; return its path, or None (after saying why)."""
    path, where = find()
    if path is not None:
        print(f"browser for the real-browser test: {path} ({where})")
        return path
    if os.environ.get(ENV, "").strip():
        print(where)  # an explicit choice is not overridden by an install
        return None
    print("no browser found for the real-browser test; installing one", flush=True)
    for route in _attempts():
        if all(_run(cmd) for cmd in route):
            path, where = find()
            if path is not None:
                print(f"browser for the real-browser test: {path} ({where})")
                return path
    print(HOW_TO_FIX)
    return None


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        install()
    elif sys.argv[1:] == []:
        found, where = find()
        print(found or where)
        sys.exit(0 if found else 1)
    else:
        sys.exit("usage: python tools/browser.py [--install]")
