"""Benchmark of the evaluation harness: items/s of the local and Ray executors on the same suite (2 CPUs),
the Ray overhead ratio, a fully cached re-run, and whether both executors wrote identical rows.

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python bench/evals/run.py [--cells 160] [--chunk 10]

The suite annotates held-out Kang 2018 cells with a frozen copy of the bundled model (one item = one chunk
of cells, read from the backed .h5ad), so the figures measure inference plus harness overhead. Ray overhead
ratio = (Ray wall time x Ray CPUs) / local wall time: 1.0 means Ray used its 2 CPUs perfectly, above 1.0 is
start-up, scheduling and per-worker model loading.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

SUITE = """
name: bench
matrix: {{datasets: [kang2018], models: [{model}]}}
tasks:
  - task: cell_type_annotation
    params: {{limit: {cells}, chunk_size: {chunk}, baseline: false}}
"""


def rows(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return sorted(db.execute("SELECT key, item, status, result FROM rows"))
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=160)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from c2s_agent.config import Settings
    from c2s_agent.evaluation import load_suite, run_suite
    from c2s_agent.models import embedded_model_path

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        shutil.copytree(embedded_model_path(), model)  # frozen: immune to the bundled model being retrained
        (tmp / "bench.yaml").write_text(SUITE.format(model=model, cells=a.cells, chunk=a.chunk))
        suite = load_suite(tmp / "bench.yaml")
        settings = Settings(runs_dir=tmp / "runs", cache_dir=tmp / "cache")
        local = run_suite(suite, settings, out=tmp / "local", executor="local", threads=1, progress=False)
        cached = run_suite(suite, settings, out=tmp / "local", executor="local", threads=1, progress=False)
        t0 = time.perf_counter()
        ray_run = run_suite(
            suite, settings, out=tmp / "ray", executor="ray", threads=1, num_cpus=a.cpus, progress=False
        )
        ray_s = time.perf_counter() - t0
        n = local.n_items
        identical = rows(tmp / "local") == rows(tmp / "ray")
        print(
            f"suite: annotation of {a.cells} held-out cells in {n} items of {a.chunk} cells (1 torch thread per worker)"
        )
        print(f"local executor: {local.seconds:7.1f} s  {n / local.seconds:6.3f} items/s  (1 process)")
        print(f"ray executor:   {ray_s:7.1f} s  {n / ray_s:6.3f} items/s  ({a.cpus} CPUs, Ray start included)")
        print(
            f"speed-up ray/local: {local.seconds / ray_s:.2f}x; Ray overhead ratio (ray s x CPUs / local s): "
            f"{ray_s * a.cpus / local.seconds:.2f}"
        )
        print(
            f"cached re-run: {cached.seconds:.2f} s ({cached.n_cached}/{cached.n_items} items cached, "
            f"{local.seconds / cached.seconds:.0f}x faster than the first run)"
        )
        print(f"local and Ray rows identical: {identical} ({len(rows(tmp / 'local'))} rows)")
        acc = local.summary["cells"][0]["metrics"]["accuracy"]
        print(
            f"accuracy on those cells: {acc:.3f} (both executors: "
            f"{ray_run.summary['cells'][0]['metrics']['accuracy']:.3f})"
        )


if __name__ == "__main__":
    main()
