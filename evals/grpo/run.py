"""GRPO demonstration on the bundled Kang data: the embedded (SFT) model trained further with GRPO on an
interferon-alpha program reward (plus sentence validity and distribution fidelity), compared with the embedded model on cells held out
of both: the IFN-beta response of CD14 Mono cells (never trained on by the embedded model, and kept out of
GRPO's prompts and rewards by ``--hold-out "CD14 Mono"``).

Both models predict a stimulated cell from each of the 340 CD14 Mono control cells (three sampling seeds);
the metrics are those of ``evals/perturbation`` (fold-change agreement on IFN-alpha / IFN-gamma programs and
the top-100 DE genes, scFID and MMD against the 303 real stimulated cells in the reference PCA space) plus the
rewards themselves on the held-out cells (mean per-cell IFN-alpha program agreement, validity).

Run: ``.venv/bin/python evals/grpo/run.py`` (trains with ``COMMAND``, then evaluates; writes results.json,
results.md, grpo_log.json and grpo_curves.png next to this file). ``--dry-run``: 10 steps on one thread,
nothing written here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("C2S_GRPO_OUT", "/tmp/c2s-grpo-demo"))
CELL_TYPE = "CD14 Mono"
SEEDS = (0, 1, 2)
COMMAND = [
    "c2s",
    "train",
    "--data",
    "kang2018",
    "--method",
    "grpo",
    "--reward",
    "program_agreement,validity,distribution",
    "--program",
    "ifn_alpha",
    "--perturbation",
    "IFN-beta",
    "--hold-out",
    CELL_TYPE,
    "--steps",
    "150",
    "--batch-size",
    "4",
    "--num-generations",
    "8",
    "--lr",
    "5e-5",
    "--beta",
    "0.1",
    "--threads",
    "2",
    "--out",
    str(OUT),
]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def train(dry_run: bool) -> dict:
    cmd = list(COMMAND)
    if dry_run:
        cmd[cmd.index("--steps") + 1], cmd[cmd.index("--threads") + 1] = "10", "1"
        cmd[cmd.index("--out") + 1] = str(OUT) + "-dry"
    exe = [str(Path(sys.executable).with_name("c2s")), *cmd[1:]]
    before, t0 = _uptime(), time.perf_counter()
    subprocess.run(exe, check=True)
    return {
        "command": " ".join(f'"{c}"' if " " in c else c for c in cmd),
        "seconds": round(time.perf_counter() - t0, 1),
        "uptime_before": before,
        "uptime_after": _uptime(),
        "out": cmd[cmd.index("--out") + 1],
    }


def evaluate(out: Path, threads: int) -> dict:
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.data import prepare, read
    from c2s_agent.metrics import get_encoder
    from c2s_agent.models.model import C2SModel, embedded_model_path
    from c2s_agent.models.transformers_backend import TransformersBackend
    from c2s_agent.sentences import ReverseTransform
    from c2s_agent.training.finetune import DataSpec
    from c2s_agent.training.grpo import heldout_perturbation

    torch.set_num_threads(threads)
    adata = read("kang2018")
    ref = prepare(adata)
    ref.var_names = ref.var_names.astype(str).str.upper()
    enc = get_encoder("pca").fit(ref)
    reverse = ReverseTransform.load(embedded_model_path() / "reverse_transform.json")
    spec = DataSpec(perturbation="IFN-beta")
    rows = {}
    for label, path in (("embedded (SFT)", embedded_model_path()), ("embedded + GRPO", out)):
        model = C2SModel(TransformersBackend(path, Settings(threads=threads)))
        rows[label] = [
            heldout_perturbation(
                model,
                adata,
                spec,
                [CELL_TYPE],
                None,
                reverse,
                ("ifn_alpha", "ifn_gamma"),
                seed=s,
                n_boot=100 if s == SEEDS[0] else 0,
                encoder=enc,
            )[CELL_TYPE]
            for s in SEEDS
        ]
    return rows


COLUMNS = [
    ("IFN-alpha cell reward", lambda r: r["ifn_alpha"]["mean_cell_reward"], 3),
    ("IFN-alpha r", lambda r: r["ifn_alpha"]["pearson"], 3),
    ("IFN-alpha tau", lambda r: r["ifn_alpha"]["kendall"], 3),
    ("IFN-gamma r", lambda r: r["ifn_gamma"]["pearson"], 3),
    ("IFN-gamma tau", lambda r: r["ifn_gamma"]["kendall"], 3),
    ("top-100 DE r", lambda r: r["top_100_de"]["pearson"], 3),
    ("IFN-alpha r (sentence space)", lambda r: r["ifn_alpha"]["sentence_space_pearson"], 3),
    ("validity", lambda r: r["validity"], 3),
    ("scFID", lambda r: r["scfid"]["value"], 2),
    ("MMD", lambda r: r["mmd"]["value"], 4),
]


def markdown(result: dict) -> str:
    lines = [f"| model | {' | '.join(c for c, _, _ in COLUMNS)} |", "|" + "---|" * (len(COLUMNS) + 1)]
    for label, runs in result["rows"].items():
        cells = []
        for _, get, d in COLUMNS:
            v = np.array([get(r) for r in runs], dtype=float)
            cells.append(f"{v.mean():.{d}f} ± {v.std(ddof=1):.{d}f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        "Mean ± sd over sampling seeds " + ", ".join(map(str, SEEDS)) + ". 95% bootstrap intervals (seed "
        f"{SEEDS[0]}): "
        + "; ".join(
            f"{label} scFID [{runs[0]['scfid']['interval'][0]:.2f}, "
            f"{runs[0]['scfid']['interval'][1]:.2f}], MMD [{runs[0]['mmd']['interval'][0]:.4f}, "
            f"{runs[0]['mmd']['interval'][1]:.4f}]"
            for label, runs in result["rows"].items()
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    dry = "--dry-run" in sys.argv
    t0 = time.perf_counter()
    run = train(dry)
    rows = evaluate(Path(run["out"]), 1 if dry else 2)
    result = {
        "training": run,
        "rows": rows,
        "seconds_total": round(time.perf_counter() - t0, 1),
        "uptime_end": _uptime(),
        "held_out": f"{CELL_TYPE}: 340 control cells -> 303 real IFN-beta cells",
    }
    print(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if dry:
        return
    (HERE / "results.json").write_text(json.dumps(result, indent=1, default=lambda x: None if x != x else x))
    (HERE / "results.md").write_text(markdown(result))
    for f in ("grpo_log.json", "grpo_curves.png"):
        shutil.copy(Path(run["out"]) / f, HERE / f)


if __name__ == "__main__":
    main()
