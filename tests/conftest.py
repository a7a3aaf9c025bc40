"""Shared test set-up: offline hubs, calm threads, the bundled datasets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def kang():
    """The bundled Kang 2018 IFN-beta PBMC subset (2,000 cells, raw counts)."""
    from c2s_agent.data import read

    return read("kang2018")


@pytest.fixture(scope="session")
def pbmc():
    """The bundled pbmc68k_reduced (700 cells; X scaled, .raw log-normalised)."""
    from c2s_agent.data import read

    return read("pbmc68k")


@pytest.fixture()
def settings(tmp_path):
    """Settings with runs and caches inside the test's temporary folder."""
    from c2s_agent.config import Settings

    return Settings(runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="session")
def example_plugin():
    """The example third-party plugin's entry-point name; ``make setup`` installs its package into the venv."""
    import importlib.metadata

    names = {ep.name for ep in importlib.metadata.entry_points(group="c2s_agent")}
    assert "cell_cycle" in names, "the example plugin is not installed: run `make setup` (pip install -e plugins/c2s-example-plugin)"
    return "cell_cycle"
