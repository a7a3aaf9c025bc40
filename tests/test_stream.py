"""Model tasks streamed from backed .h5ad files on real Kang cells: the same results as the in-memory path,
resume after kill -9 at a seeded chunk (nothing redone, lost or duplicated), the Ray executor's rows identical
to the local executor's (a real local Ray), and one clear error for a full disk, a read-only output or the
store of another run."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from c2s_agent.errors import InputError
from c2s_agent.models import load_model, tl
from c2s_agent.models.stream import store_path, stream

ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _cells(kang, tmp_path: Path, n: int, name: str = "in.h5ad") -> tuple[ad.AnnData, Path]:
    """The first ``n`` Kang cells, in memory and as a file."""
    sub = kang[:n].copy()
    path = tmp_path / name
    sub.write_h5ad(path)
    return sub, path


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_streamed_annotation_and_embeddings_equal_the_in_memory_path(kang, tmp_path, model):
    cells, path = _cells(kang, tmp_path, 300)
    df = tl.annotate(cells, model)
    res = tl.annotate(path, model, out=tmp_path / "ann.h5ad", chunk_size=110)
    assert (res.n_chunks, res.n_resumed, res.n_run, res.cells_run) == (3, 0, 3, 300)
    out = ad.read_h5ad(tmp_path / "ann.h5ad")
    assert list(out.obs_names) == list(cells.obs_names) and out.n_vars == cells.n_vars
    assert (out.obs["c2s_cell_type"].astype(str).to_numpy() == df["label"].to_numpy()).all()
    np.testing.assert_allclose(out.obs["c2s_confidence"], df["confidence"], atol=1e-5)
    np.testing.assert_allclose(
        out.obsm["c2s_label_probs"].to_numpy(), cells.obsm["c2s_label_probs"].to_numpy(), atol=1e-5
    )
    assert list(out.obsm["c2s_label_probs"].columns) == list(cells.obsm["c2s_label_probs"].columns)
    assert out.uns["c2s_annotate"]["counts"] == cells.uns["c2s_annotate"]["counts"]
    assert (out.X != cells.X).nnz == 0 and list(out.obs.columns[:-2]) == list(kang.obs.columns)
    assert not store_path(tmp_path / "ann.h5ad").exists()  # the store goes once the output is written

    X = tl.embed(cells, model)
    calls = []
    tl.embed(
        ad.read_h5ad(path, backed="r"),
        model,
        out=tmp_path / "emb.h5ad",
        chunk_size=128,
        on_call=lambda kind, **f: calls.append((kind, f["task"], f["n_inputs"])),
    )
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "emb.h5ad").obsm["X_c2s"], X, atol=1e-5)
    assert calls == [("model", "embed", 128), ("model", "embed", 128), ("model", "embed", 44)]  # one per chunk


def test_streamed_perturbation_samples_each_chunk_from_its_own_seeds(kang, tmp_path, model):
    cells, path = _cells(kang, tmp_path, 50)
    res = tl.perturb(path, "IFN-beta", model=model, seed=3, out=tmp_path / "pert.h5ad", chunk_size=20)
    out = ad.read_h5ad(tmp_path / "pert.h5ad")
    parts = [tl.perturb(cells[a : a + 20].copy(), "IFN-beta", model=model, seed=3 + a) for a in (0, 20, 40)]
    expected = ad.concat(parts)
    assert res.n_chunks == 3 and list(out.obs_names) == list(expected.obs_names)
    assert list(out.obs["c2s_sentence"]) == list(expected.obs["c2s_sentence"])
    assert list(out.obs["c2s_source_cell"]) == list(cells.obs_names)
    np.testing.assert_allclose(out.X.toarray(), expected.X.toarray())
    assert out.uns["c2s_perturb"]["perturbation"] == "IFN-beta"


def _finished(store: Path) -> int:
    try:
        db = sqlite3.connect(store, timeout=1)
        try:
            return db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_finished_chunk(kang, tmp_path, model):
    cells, path = _cells(kang, tmp_path, 480)
    out = tmp_path / "out.h5ad"
    cmd = [sys.executable, "-m", "c2s_agent", "annotate", str(path), str(out), "--backed", "--chunk-size", "40"]
    seed = int.from_bytes(os.urandom(4), "little")
    kill_after = random.Random(seed).randint(2, 9)  # of 12 chunks
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _finished(store_path(out)) < kill_after:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before chunk {kill_after} (seed {seed})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _finished(store_path(out))
    assert kill_after <= before < 12 and not out.exists()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = " ".join(done.stderr.split())
    assert f"{before} of 12 chunks already done" in log and f"({before} resumed, {12 - before} run" in log
    assert "ETA" in log and "cells/s" in log
    result = ad.read_h5ad(out)
    assert list(result.obs_names) == list(cells.obs_names)  # no row lost or duplicated
    df = tl.annotate(cells, model)
    assert (result.obs["c2s_cell_type"].astype(str).to_numpy() == df["label"].to_numpy()).all()
    np.testing.assert_allclose(result.obs["c2s_confidence"], df["confidence"], atol=1e-5)
    assert not store_path(out).exists()


@pytest.mark.slow
def test_ray_executor_gives_identical_rows(kang, tmp_path):
    pytest.importorskip("ray")
    _, path = _cells(kang, tmp_path, 160)
    local = stream("annotate", path, tmp_path / "local.h5ad", chunk_size=40, threads=1, progress=False)
    on_ray = stream(
        "annotate", path, tmp_path / "ray.h5ad", chunk_size=40, threads=1, executor="ray", num_cpus=2, progress=False
    )
    assert on_ray.n_run == local.n_run == 4
    assert not any(w.endswith(f":{os.getpid()}") for w in on_ray.workers)  # computed in Ray workers, not here
    a, b = ad.read_h5ad(tmp_path / "local.h5ad"), ad.read_h5ad(tmp_path / "ray.h5ad")
    assert a.obs.equals(b.obs)  # labels and confidences, bit for bit
    assert np.array_equal(a.obsm["c2s_label_probs"].to_numpy(), b.obsm["c2s_label_probs"].to_numpy())


def test_store_of_another_run_and_in_memory_input_are_clear_errors(kang, tmp_path, model):
    cells, path = _cells(kang, tmp_path, 30)
    out = tmp_path / "out.h5ad"
    stream("embed", path, out, model, chunk_size=10, progress=False)
    store = store_path(out)
    from c2s_agent.models.chunk_store import ChunkStore

    ChunkStore(store, {"task": "embed", "input": "another file"}).close()
    with pytest.raises(InputError, match=r"holds the results of another run \(different .*input.*Fix: .*delete it"):
        stream("embed", path, out, model, chunk_size=10, progress=False)
    with pytest.raises(InputError, match="in-memory AnnData"):
        stream("embed", cells, out, model)
    with pytest.raises(InputError, match="out: is needed to stream"):
        tl.embed(path, model)


def _in_small_mount(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (bash) in a private mount namespace where ``$MNT`` is a 3 MB tmpfs."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=3m tmpfs {mnt}"], capture_output=True, text=True
    )
    if probe.returncode:
        pytest.skip(f"no private mounts here ({probe.stderr.strip()[:100]})")
    return subprocess.run(
        ["unshare", "-m", "bash", "-c", f"mount -t tmpfs -o size=3m tmpfs {mnt} && {script}"],
        env={**ENV, "MNT": str(mnt)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "case, setup, problem",
    [
        ("full", "head -c 2900000 /dev/zero > $MNT/filler", "the disk is full"),
        ("read-only", "mount -o remount,ro $MNT", "its folder is read-only"),
    ],
)
def test_full_disk_or_read_only_output_is_one_clear_error(kang, tmp_path, case, setup, problem):
    _, path = _cells(kang, tmp_path, 40)
    cli = f"{sys.executable} -m c2s_agent embed {path} $MNT/out.h5ad --backed --chunk-size 20"
    done = _in_small_mount(f"{setup}; {cli}", tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "out.h5ad" in errors[0] and problem in errors[0] and "Fix:" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
