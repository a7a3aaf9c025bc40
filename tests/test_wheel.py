"""The built wheel runs from where it is installed: nothing reads the source tree at run time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The wheel built from this checkout, installed (without dependencies) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(tmp.glob("c2s_agent-*.whl"))
    target = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return target


def _c2s(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "C2S_RUNS_DIR": str(cwd / "runs"), "C2S_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "c2s_agent", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_installed_wheel_runs_every_kind_of_command(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import c2s_agent, c2s_builtins; from c2s_agent.resources import "
            "bundled; print(c2s_agent.__file__, c2s_builtins.__file__, bundled('evals'), "
            "bundled('data'))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(p.startswith(str(site)) for p in where.stdout.split()), where.stdout  # the wheel, not the checkout
    planning = _c2s(site, tmp_path, "eval", "planning", "--questions", "heldout")
    assert planning.returncode == 0, planning.stderr
    assert "planning accuracy (embedded)" in planning.stdout and "on 70 questions" in planning.stdout
    asked = _c2s(site, tmp_path, "ask", "How many cells are there per cell type?", "--data", "demo")
    assert asked.returncode == 0, asked.stderr
    report = Path(asked.stdout.strip().splitlines()[-1])
    assert report.is_file() and report.is_relative_to(tmp_path) and "CD14 Mono" in report.read_text()
    listed = _c2s(site, tmp_path, "plugins", "list")
    assert listed.returncode == 0 and "tool describe_dataset" in listed.stdout
    suite = subprocess.run(
        [
            sys.executable,
            "-c",
            "from c2s_agent.evaluation import load_suite; print(len(load_suite('bundled').cells()))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert suite.returncode == 0 and int(suite.stdout) > 3, suite.stderr
