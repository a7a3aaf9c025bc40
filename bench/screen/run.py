"""Speed of the virtual screen on the embedded model: 100 perturbation items x 2 contexts x 64 cells.

The embedded model was trained on one perturbation (IFN-beta), and the screen flags and never scores unknown
ones. So that all 100 items are real, scored predictions, the library is IFN-beta replicated 100 times (items
``IFN-beta#000`` ... ``IFN-beta#099``, each an independent sampling of the model's predicted response). The
two contexts are the Kang interferon-stimulated cells (``condition=stim``) and the control cells
(``condition=ctrl``). Prints wall time, cells/s, the share of time spent in the model, and the target
(<= 300 s). Results go to bench/_work/screen (removed first, so nothing is resumed).

Run: ``.venv/bin/python bench/screen/run.py [--items 100] [--cells 64] [--threads 2] [--batch-cells 1024]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "screen"
TARGET_SECONDS = 300.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-cells", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import pandas as pd

    from c2s_agent.config import Settings
    from c2s_agent.data import read
    from c2s_agent.models import load_model
    from c2s_agent.screen import run_screen

    shutil.rmtree(WORK, ignore_errors=True)
    adata = read("kang2018")
    t_load = time.perf_counter()
    model = load_model("embedded", Settings(threads=args.threads))
    t_load = time.perf_counter() - t_load
    library = pd.DataFrame({"item": [f"IFN-beta#{i:03d}" for i in range(args.items)], "perturbation": "IFN-beta"})
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    res = run_screen(
        adata,
        library,
        None,
        "mhc_i",
        out_dir=WORK,
        model=model,
        n_cells=args.cells,
        batch_cells=args.batch_cells,
        progress=True,
    )
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    run = res.summary["run"]
    n_scored = int((res.table["status"] == "scored").sum())
    print(f"model load: {t_load:.1f} s (not counted)")
    print(
        f"screen: {args.items} items x 2 contexts x {args.cells} cells = {run['cells_predicted']} cells predicted, "
        f"{n_scored}/{args.items} items scored"
    )
    print(
        f"wall time: {wall:.1f} s  (target <= {TARGET_SECONDS:.0f} s: {'MET' if wall <= TARGET_SECONDS else 'MISSED'}, "
        f"ratio {wall / TARGET_SECONDS:.2f})"
    )
    print(f"cells/s: {run['cells_predicted'] / wall:.1f}")
    print(
        f"time in the model: {run['model_seconds']:.1f} s = {run['model_seconds'] / wall:.1%} of wall time "
        f"({run['model_calls']} batched model calls)"
    )
    split = res.table["split"]
    print(
        f"MHC-I context split over the replicates: mean {split.mean():+.4f}, sd {split.std():.4f} "
        f"(sampling noise of the model's prediction)"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine load average at the end: {load:.1f} on {os.cpu_count()} cores; this process used {cpu:.0f} CPU-s "
        f"= {cpu / wall:.2f} cores on average (a busy machine slows the wall time, not the CPU time)"
    )


if __name__ == "__main__":
    main()
