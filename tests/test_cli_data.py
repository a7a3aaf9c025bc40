"""The `c2s sentences` and `c2s data info` commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import anndata as ad
import numpy as np

from c2s_agent.sentences import from_adata


def c2s(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "c2s_agent", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_sentences_in_memory_and_backed_agree(tmp_path):
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    r1 = c2s("sentences", "demo", a, "--top-k", 50)
    r2 = c2s("sentences", "demo", b, "--top-k", 50, "--backed", "--chunk-size", 700)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "Wrote" in r1.stderr and "2,000 cells" in r1.stderr
    sa, sb = from_adata(ad.read_h5ad(a)), from_adata(ad.read_h5ad(b))
    np.testing.assert_array_equal(sa.idx, sb.idx)
    assert sa.idx.shape == (2000, 50)


def test_data_info_json():
    r = c2s("data", "info", "pbmc68k", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    kinds = {m["source"]: m["kind"] for m in info["matrices"]}
    assert kinds == {"X": "scaled", "raw": "log-normalised"} and info["obs"]["bulk_labels"] == 10


def test_bad_input_gives_one_clear_line(tmp_path):
    bad = tmp_path / "notes.h5ad"
    bad.write_text("not hdf5")
    r = c2s("sentences", bad, tmp_path / "o.h5ad")
    assert r.returncode == 2
    assert "is not an HDF5/.h5ad file" in r.stderr and "Fix:" in r.stderr and "Traceback" not in r.stderr
    r = c2s("sentences", "demo", tmp_path / "missing" / "o.h5ad")
    assert r.returncode == 2 and "folder that does not exist" in r.stderr
    r = c2s("sentences", "demo", tmp_path / "o.h5ad", "--top-k", 0)
    assert r.returncode == 2 and "top_k: must be >= 1" in r.stderr
