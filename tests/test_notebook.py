"""The notebook tutorial (examples/tutorial.ipynb) executed top to bottom with nbclient, on a kernel of this
environment, so that it cannot rot: any cell that raises fails the test. Kernel files, runs and caches stay in
temporary folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    for var, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("C2S_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("C2S_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(TUTORIAL, as_version=4)
    km = KernelManager(kernel_name="python3")
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
        assert km.format_kernel_cmd()[0] == sys.executable  # the kernel ran in this environment
    finally:
        km.shutdown_kernel(now=True)

    outputs = {c["id"]: c.get("outputs", []) for c in nb.cells if c.cell_type == "code"}
    text = {
        k: "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", "")) for o in v)
        for k, v in outputs.items()
    }
    report = next(o["data"]["text/html"] for o in outputs["c03"] if "text/html" in o.get("data", {}))
    assert report.startswith('<div class="c2s-report">') and "CD14 Mono" in report
    assert "groups CD14 Mono -> B, B Activated" in text["c08"] and "MS4A1" in text["c08"]
    assert "'within': ['B', 'B Activated']" in text["c09"] and "'groupby': 'condition'" in text["c09"]
    ledger = text["c12"].splitlines()
    assert "[('in-memory AnnData',)]" in ledger[0] and all("[('session state',)]" in line for line in ledger[1:4])
    assert sum("image/png" in o.get("data", {}) for c in ("c14", "c15") for o in outputs[c]) == 2
    assert len(list((tmp_path / "runs").glob("*/report.html"))) == 4
