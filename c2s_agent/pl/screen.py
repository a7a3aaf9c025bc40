"""Plots of a virtual screen (:class:`c2s_agent.screen.ScreenResult`): the ranking with intervals, and program
score distributions of base and predicted cells."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

MAX_ROWS = 40


def screen_ranking(res) -> Figure:
    """The top scored items by context split (or by shift with one context), each with its interval and the
    per-context shifts."""
    table, contexts, program = res.table, list(res.summary["contexts"]), res.summary["program"]
    scored = table[table["status"] == "scored"].head(MAX_ROWS).iloc[::-1]
    y = np.arange(len(scored))
    fig = Figure(figsize=(7.5, 1.2 + 0.22 * len(scored)))
    ax = fig.subplots()
    if len(contexts) >= 2:
        err = np.vstack([scored["split"] - scored["split_low"], scored["split_high"] - scored["split"]])
        ax.errorbar(
            scored["split"],
            y,
            xerr=err,
            fmt="o",
            color="black",
            ms=4,
            capsize=2,
            label=f"split ({contexts[0]} - {contexts[1]}), 95% CI",
        )
    colours = ["#4477aa", "#ee6677", "#228833", "#ccbb44"]
    for c, col in zip(contexts, colours):
        ax.scatter(scored[f"shift_{c}"], y, s=14, color=col, marker="s", alpha=0.7, label=f"shift in {c}")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, scored["item"].astype(str))
    ax.set_xlabel(f"change of the {program} program score (predicted - base)")
    n_total = len(table)
    ax.set_title(
        f"Screen ranking: {len(scored)} of {n_total} items shown"
        + (f" ({int((table['status'] != 'scored').sum())} not scored)" if (table["status"] != "scored").any() else "")
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def screen_distributions(res) -> Figure:
    """Per context: program scores of the base cells, of the top-ranked item's predicted cells, and of all
    scored items' predicted cells pooled."""
    table, contexts, program, records = res.table, list(res.summary["contexts"]), res.summary["program"], res.records
    scored = table[table["status"] == "scored"]
    top = scored["item"].iloc[0] if len(scored) else None
    fig = Figure(figsize=(4.2 * len(contexts), 3.4))
    axes = fig.subplots(1, len(contexts), squeeze=False, sharey=True)
    for ax, c in zip(axes[0], contexts):
        recs = [r for r in records if r["context"] == c and r["status"] == "scored"]
        if not recs:
            ax.set_title(f"{c}: nothing scored")
            continue
        data, labels = [recs[0]["base_scores"]], ["base cells"]
        if len(recs) > 1:
            data.append([x for r in recs for x in r["predicted_scores"]])
            labels.append(f"predicted, all {len(recs)} items")
        top_rec = next((r for r in recs if r["item"] == top), None)
        if top_rec is not None:
            data.insert(1, top_rec["predicted_scores"])
            labels.insert(1, f"predicted, {top}")
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(np.arange(1, len(data) + 1), labels, rotation=20, fontsize=7)
        ax.set_title(f"context {c}", fontsize=9)
    axes[0][0].set_ylabel(f"{program} rank score")
    fig.suptitle(f"{program} program scores per cell", fontsize=10)
    fig.tight_layout()
    return fig
