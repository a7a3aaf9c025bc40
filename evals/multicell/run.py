"""Multi-cell reasoning with and without injected interaction knowledge, on the embedded model's held-out
Kang 2018 cells: runs ``suite.yaml`` through the evaluation harness (task ``multicell_knowledge``), then
writes ``results.json``, ``results.md`` (the table) and ``with_without.png`` next to this file.

Run: ``.venv/bin/python evals/multicell/run.py [SUITE.yaml] [THREADS]`` (a few minutes on 2 cores; the knowledge
index is built on first use); another suite (``suite-smollm2.yaml``) writes ``results-smollm2.*``. Rows are
cached in ``runs/evals/multicell``; a re-run only rewrites the files here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
COLUMNS = [
    ("n_groups", "groups"),
    ("fraction_with_interactions", "groups with >= 1 pair"),
    ("mean_interactions", "pairs per group"),
    ("accuracy_single_cell", "single-cell prompt, centre cell"),
    ("accuracy_without", "acc. without"),
    ("accuracy_with", "acc. with"),
    ("accuracy_majority_without", "acc. (majority) without"),
    ("accuracy_majority_with", "acc. (majority) with"),
    ("true_logprob_without", "log p(true) without"),
    ("true_logprob_with", "log p(true) with"),
    ("mean_kl", "mean KL(with || without)"),
    ("fraction_changed", "answers changed"),
    ("n_fixed", "answers made right by knowledge"),
    ("n_broken", "answers made wrong by knowledge"),
    ("injected_accuracy_without", "acc. without (groups with pairs)"),
    ("injected_accuracy_with", "acc. with (groups with pairs)"),
    ("injected_mean_kl", "mean KL (groups with pairs)"),
    ("injected_fraction_changed", "changed (groups with pairs)"),
]


def main(argv: list[str]) -> int:
    from c2s_agent.config import Settings
    from c2s_agent.evaluation import load_suite, run_suite

    suite = Path(argv[0]) if argv and argv[0].endswith(".yaml") else HERE / "suite.yaml"
    argv = argv[1:] if argv and argv[0].endswith(".yaml") else argv
    threads = int(argv[0]) if argv else 1
    res = run_suite(load_suite(suite), Settings(), threads=threads, progress=False)
    tag = "" if suite.name == "suite.yaml" else "-" + suite.stem.removeprefix("suite-")
    if res.n_errors:
        print("\n".join(map(str, res.errors)), file=sys.stderr)
        return 1
    cells = [
        {
            "groups": f"{p['groupby']} clusters" if p["groupby"] else "kNN neighbourhoods",
            "n_cells": p["n_cells"],
            "top_k": p["top_k"],
            **c["metrics"],
        }
        for c in res.summary["cells"]
        for p in [c["spec"]["params"]]
    ]
    (HERE / f"results{tag}.json").write_text(
        json.dumps(
            {"cells": cells, "seconds": round(res.seconds, 1), "n_run": res.n_run, "n_cached": res.n_cached}, indent=1
        )
    )
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [
        "| metric | " + " | ".join(f"{c['groups']}, {c['n_cells']} cell(s) x {c['top_k']} genes" for c in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    lines += [f"| {label} | " + " | ".join(fmt(c.get(key)) for c in cells) + " |" for key, label in COLUMNS]
    (HERE / f"results{tag}.md").write_text("\n".join(lines) + "\n")
    _plot(cells, HERE / f"with_without{tag}.png", res.summary["cells"][0]["spec"]["model"])
    print("\n".join(lines))
    return 0


def _plot(cells: list[dict], path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(cells))
    names = [f"{c['groups']}\n{c['n_cells']} cell(s)" for c in cells]
    for off, key, label, colour in (
        (-0.27, "accuracy_single_cell", "single-cell prompt", "#999999"),
        (0, "accuracy_without", "multi-cell, no knowledge", "#4477aa"),
        (0.27, "accuracy_with", "multi-cell + interactions", "#ee6677"),
    ):
        axes[0].bar(x + off, [c[key] for c in cells], 0.27, label=label, color=colour)
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel("cell type accuracy (first cell)")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    for off, key, label, colour in (
        (-0.2, "fraction_changed", "answers changed", "#228833"),
        (0.2, "mean_kl", "mean KL(with || without), nats", "#ccbb44"),
    ):
        axes[1].bar(x + off, [c[key] for c in cells], 0.4, label=label, color=colour)
    axes[1].set_xticks(x, names)
    axes[1].set_title("what the injected interactions change")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"C2S model {model} (trained on single-cell prompts only), held-out Kang 2018 cells", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
