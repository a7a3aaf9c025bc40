"""Atlas scale: streamed model tasks on 10^4, 10^5 and 10^6 synthetic cells, local and on Ray, with the embedded
model; cells/s and peak RSS per size, against the in-memory path; and a projection of 10^7 cells on N GPUs.

    flock /tmp/c2s-heavy.lock .venv/bin/python bench/scale/run.py [--sizes 10000,100000,1000000] \\
        [--budget-minutes 4] [--kill-after-minutes 6] [--resume] [--dtype bfloat16] \\
        [--gpu-json '{...}' | --gpu-json gpu.json] [--gpus 8]
    .venv/bin/python bench/scale/run.py --sizes "" --gpu-json gpu.json --gpus 8     # the projection alone

Synthetic cells have real gene names and Kang-like counts: each is a bundled Kang 2018 cell (taken in turn)
whose counts are redrawn from a Poisson law around the originals, so sentences, prompt lengths and sparsity are
those of real PBMCs. Every run (in-memory, local, Ray) uses the model in --dtype (``C2S_DTYPE``). Files are
written once to bench/_work/scale/ (10^6 cells: 4.1 GB, uncompressed).

Each run is ``c2s annotate IN OUT --backed`` (``stream``) in a child process, chunk size fixed at --chunk-size.
A run longer than --budget-minutes is killed (kill -9) at the budget, and its figures come from the chunks it
finished (the results store keeps them; a later run with --resume goes on from them): those rows say "partial". With
--kill-after-minutes, the largest local run is killed that early and then resumed to the end within the budget. Peak RSS is
the child's high-water mark (VmHWM, read at least each second) and, on Ray, the peak sum of RSS over the whole
process tree (driver, raylet and workers). cells/s is the steady rate of finished chunks (first chunk's start to
last chunk's end, start-up and the final write left out), and end-to-end for complete runs.

The 10^7-cell projection divides 10^7 by N times the per-GPU annotate rate measured by gpu_throughput.py (pass
its JSON line with --gpu-json); it is a projection from a measured rate, not a measurement, and without a GPU
figure the table says that none was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parents[1] / "_work" / "scale"
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def synthetic_file(n_cells: int, block: int = 50_000) -> Path:
    """``n_cells`` Kang-like cells (real gene names), written once, block by block."""
    import h5py
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import sparse_dataset, write_elem

    from c2s_agent.data import read

    path = WORK / f"kang_like_{n_cells}.h5ad"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    kang = read("kang2018")
    base = sp.csr_matrix(kang.X, dtype=np.float32)
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        X = None
        for start in range(0, n_cells, block):
            rows = np.arange(start, min(start + block, n_cells)) % base.shape[0]
            part = base[rows]
            part.data = rng.poisson(part.data).astype(np.float32)
            part.eliminate_zeros()
            empty = np.flatnonzero(np.diff(part.indptr) == 0)
            if len(empty):  # a cell redrawn to nothing keeps its original counts
                part = part.tolil()
                for r in empty:
                    part[r] = base[rows[r]]
                part = part.tocsr()
            if X is None:
                write_elem(f, "X", part)
                X = sparse_dataset(f["X"])
            else:
                X.append(part)
        write_elem(f, "obs", pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n_cells)])))
        write_elem(f, "var", pd.DataFrame(index=kang.var_names.copy()))
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
    tmp.rename(path)
    return path


def _tree(pid: int) -> list:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss(pid: int) -> int:
    import psutil

    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(path: Path, task: str, executor: str, chunk: int, budget_s: float, fresh: bool = True) -> dict:
    """One streamed run in a child process, killed at the budget; figures from its store and its memory.
    ``fresh=False`` resumes the store a killed run left."""
    out = WORK / f"out_{task}_{executor}_{path.stem}.h5ad"
    store = Path(f"{out}.c2s-chunks.sqlite")
    for p in (out, store, Path(f"{store}-wal"), Path(f"{store}-shm")) if fresh else ():
        p.unlink(missing_ok=True)
    resumed = len(_rows(store))
    log_path = out.with_suffix(".log")
    cmd = [sys.executable, "-m", "c2s_agent", task, str(path), str(out), "--backed", "--chunk-size", str(chunk)]
    if executor == "ray":
        cmd += ["--executor", "ray", "--num-cpus", "2", "--threads", "1"]
    t0 = time.time()
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    hwm = tree = 0
    killed = False
    while proc.poll() is None:
        hwm, tree = max(hwm, _hwm(proc.pid)), max(tree, _tree_rss(proc.pid))
        if time.time() - t0 > budget_s:
            rows = _rows(store)
            started = _tree(proc.pid)[1:]  # Ray's processes of this run, ended by their ids after the run
            os.kill(proc.pid, signal.SIGKILL)
            for child in started:
                try:
                    child.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            killed = True
            break
        time.sleep(1.0)
    proc.wait()
    log_file.close()
    log = log_path.read_text()
    wall = time.time() - t0
    if not killed:
        rows = None
        if proc.returncode:
            raise RuntimeError(log[-2000:])
    n_cells = _n_obs(path)
    result = {
        "cells": n_cells,
        "task": task,
        "executor": executor,
        "chunk": chunk,
        "complete": not killed,
        "resumed_chunks": resumed,
        "resume_line": next((x for x in log.splitlines() if "already done" in x), ""),
        "peak_rss_gib": round(hwm / 2**30, 2),
        "tree_rss_gib": round(tree / 2**30, 2),
        "wall_s": round(wall, 1),
    }
    if killed:
        rows = [r for r in rows if r[5] >= t0]  # chunks of this run, not resumed ones
        done = sum(b - a for _, a, b, *_ in rows)
        first = min(r[5] - r[3] for r in rows) if rows else t0
        result.update(
            cells_done=done,
            chunks_done=len(rows),
            cells_per_s=round(done / (max(r[5] for r in rows) - first), 1) if rows else 0.0,
        )
    else:
        rate = [float(x.split()[0].replace(",", "")) for x in log.split(" run at ")[1:]]
        result.update(
            cells_done=n_cells,
            chunks_done=-(-n_cells // chunk),
            end_to_end_cells_per_s=round(n_cells / wall, 1),
            cells_per_s=rate[-1] if rate else None,
        )
        out.unlink(missing_ok=True)
    return result


def _rows(store: Path) -> list[tuple]:
    try:
        db = sqlite3.connect(store, timeout=5)
        try:
            return list(db.execute("SELECT chunk, start, stop, seconds, worker, finished_at FROM chunks"))
        finally:
            db.close()
    except sqlite3.Error:
        return []


def _n_obs(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["X"].attrs["shape"][0])


def in_memory(path: Path, task: str) -> dict:
    """The in-memory path on the same cells, in a child process: read whole, tl.<task>, cells/s and peak RSS."""
    code = (
        "import time, json; from c2s_agent.data import read; from c2s_agent.models import load_model, tl; "
        f"a = read({str(path)!r}); m = load_model(); t = time.perf_counter(); tl.{task}(a, m); "
        "dt = time.perf_counter() - t; "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
        "print(json.dumps({'cells_per_s': a.n_obs / dt, 'peak_rss_gib': int(hwm) / 2**20}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "cells": _n_obs(path),
        "task": task,
        "executor": "in-memory",
        "complete": True,
        "cells_per_s": round(got["cells_per_s"], 1),
        "peak_rss_gib": round(got["peak_rss_gib"], 2),
    }


def projection(gpu: dict | None, gpus: int, cells: int = 10_000_000) -> str:
    if not gpu:
        return (
            f"10^7 cells on {gpus} GPUs: no GPU throughput was measured (run bench/scale/gpu_throughput.py on a "
            "GPU and pass its JSON with --gpu-json), so no projection is made"
        )
    lines = []
    for dtype in ("float32", "bfloat16"):
        if dtype in gpu:
            rate = gpu[dtype]["annotate_cells_per_s"]
            lines.append(
                f"PROJECTION (not a measurement) from {rate:,.0f} annotate cells/s measured on one "
                f"{gpu.get('gpu')} ({dtype}, {gpu['cells']:,} cells): 10^7 cells on {gpus} such GPUs in "
                f"{cells / (rate * gpus) / 60:,.1f} min, if every GPU gets chunks as fast as it scores them "
                f"(tokenising alone ran {gpu['tokenize_cells_per_s']:,.0f} cells/s per CPU process)"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--tasks", default="annotate", help="comma-separated: annotate, embed")
    p.add_argument("--executors", default="local,ray")
    p.add_argument("--chunk-size", type=int, default=2000)
    p.add_argument("--budget-minutes", type=float, default=4.0, help="a run is killed at this budget (partial figures)")
    p.add_argument(
        "--kill-after-minutes",
        type=float,
        default=None,
        help="kill -9 the largest local run after this long, then resume it within --budget-minutes",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the results store an earlier run of the same size, task and executor left (stopped at its "
        "budget, killed, or cut off with the session) instead of starting afresh",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's dtype in every run")
    p.add_argument("--gpu-json", default=None, help="the JSON line of gpu_throughput.py, or a file holding it")
    p.add_argument("--gpus", type=int, default=8)
    args = p.parse_args()
    ENV["C2S_DTYPE"] = args.dtype
    rows = []
    sizes = [int(x) for x in args.sizes.split(",") if x]  # --sizes "" prints the projection only
    for n in sizes:
        path = synthetic_file(n)
        for task in args.tasks.split(","):
            if n == min(sizes) and n <= 100_000:  # in memory, 10^6 cells would hold the whole matrix
                rows.append(in_memory(path, task))
                print(json.dumps(rows[-1]), flush=True)
            for executor in args.executors.split(","):
                largest_local = executor == "local" and n == max(sizes)
                kill = args.kill_after_minutes if largest_local and args.kill_after_minutes else args.budget_minutes
                rows.append(run(path, task, executor, args.chunk_size, kill * 60, fresh=not args.resume))
                print(json.dumps(rows[-1]), flush=True)
                if not rows[-1]["complete"] and largest_local:
                    rows.append(run(path, task, executor, args.chunk_size, args.budget_minutes * 60, fresh=False))
                    print(json.dumps(rows[-1]), flush=True)  # the killed run resumed: its chunks are kept
    print(f"\nmodel dtype: {args.dtype}")
    print(
        f"{'cells':>9} {'task':<9} {'executor':<10} {'cells/s':>8} {'end-to-end':>10} {'peak RSS':>9} "
        f"{'tree RSS':>9}  run"
    )
    for r in rows:
        e2e = r.get("end_to_end_cells_per_s")
        status = "complete" if r["complete"] else f"partial: {r['chunks_done']} chunks, {r['cells_done']:,} cells"
        status += f" (resumed {r['resumed_chunks']} chunks of the killed run)" if r.get("resumed_chunks") else ""
        print(
            f"{r['cells']:>9,} {r['task']:<9} {r['executor']:<10} {r['cells_per_s'] or 0:>8,.1f} "
            f"{'' if e2e is None else f'{e2e:,.1f}':>10} {r['peak_rss_gib']:>7.2f} G "
            f"{r.get('tree_rss_gib', 0):>7.2f} G  {status}"
        )
    gpu = None
    if args.gpu_json:
        text = Path(args.gpu_json).read_text() if Path(args.gpu_json).exists() else args.gpu_json
        gpu = json.loads(text)
    print("\n" + projection(gpu, args.gpus))


if __name__ == "__main__":
    main()
