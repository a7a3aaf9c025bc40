"""The dual-context virtual screen: perturbation library x contexts x gene program, resumable.

Each item is one perturbation in one context. A context is a set of base cells (obs values such as
``condition=stim``, optionally one cell type); the same ``n_cells`` base cells are used for every perturbation in
a context (a paired design). The model predicts each base cell's perturbed sentence; the program is scored on the
base and predicted sentences (rank score, see :mod:`c2s_agent.screen.programs`) and the item's *shift* is the
mean paired difference, with a bootstrap interval. The *context split* of a perturbation is its shift in the
first context minus its shift in the second. Perturbations the model does not declare are stored with status
``"unseen"`` and never scored; a model that declares no perturbations at all gives ``"undeclared"`` unless
``trust_undeclared=True``.

Every finished item is committed to ``<out_dir>/screen.sqlite`` at once; a re-run with the same settings skips
finished items, so a killed screen resumes without redoing or losing work.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions import find_columns
from ..conventions.slots import CELL_TYPE, SCREEN
from ..errors import InputError
from .cells import select_cells
from .programs import GeneProgram, get_program, rank_scores
from .store import ResultStore, item_key

SCORED, UNSEEN, UNDECLARED = "scored", "unseen", "undeclared"


# ------------------------------------------------------------------------------------------------- inputs
def load_library(perturbations) -> pd.DataFrame:
    """The perturbation library as a table with columns ``item`` (unique), ``perturbation`` and
    ``context_text``, from a list of names, a comma-separated string, a DataFrame, or a CSV / text file
    (CSV: column ``perturbation``, optional ``item`` for replicates or labels and ``context_text``)."""
    if isinstance(perturbations, (str, Path)) and Path(str(perturbations)).suffix.lower() in (".csv", ".tsv", ".txt"):
        path = Path(perturbations)
        if not path.exists():
            raise InputError(path, "no such file", "give a CSV with a 'perturbation' column, or a comma-separated list")
        if path.suffix.lower() == ".txt":
            df = pd.DataFrame({"perturbation": [x.strip() for x in path.read_text().splitlines() if x.strip()]})
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str).fillna("")
            if "perturbation" not in df.columns:
                raise InputError(
                    path,
                    f"has no 'perturbation' column (columns: {list(df.columns)})",
                    "name the column of perturbation names 'perturbation'",
                )
    elif isinstance(perturbations, pd.DataFrame):
        if "perturbation" not in perturbations.columns:
            raise InputError("perturbations", "table has no 'perturbation' column", "add a 'perturbation' column")
        df = perturbations.astype(str).copy()
    elif isinstance(perturbations, str):
        df = pd.DataFrame({"perturbation": [x.strip() for x in perturbations.split(",") if x.strip()]})
    elif isinstance(perturbations, (list, tuple)):
        df = pd.DataFrame({"perturbation": [str(x).strip() for x in perturbations if str(x).strip()]})
    else:
        raise InputError(
            "perturbations",
            f"is a {type(perturbations).__name__}",
            "give a list of names, a comma-separated string, or a CSV path",
        )
    if df.empty:
        raise InputError("perturbations", "is empty", "give at least one perturbation")
    df["perturbation"] = df["perturbation"].astype(str).str.strip()
    if "item" not in df.columns:
        df["item"] = df["name"] if "name" in df.columns else df["perturbation"]
    df["item"] = df["item"].astype(str).str.strip()
    df["context_text"] = df["context_text"].astype(str) if "context_text" in df.columns else ""
    dup = df["item"][df["item"].duplicated()].unique().tolist()
    if dup:
        raise InputError(
            "perturbations",
            f"list {dup[:5]} more than once",
            "give each entry once, or an 'item' column naming replicates (e.g. IFN-beta#1, IFN-beta#2)",
        )
    return df[["item", "perturbation", "context_text"]].reset_index(drop=True)


def _parse_where(text: str, name: str) -> dict[str, str]:
    from ..metrics.inputs import parse_where

    return parse_where(text, name) or {}


def resolve_contexts(adata, contexts=None) -> list[tuple[str, dict[str, str]]]:
    """Named base-cell sets. ``contexts``: a dict name -> {column: value} or "column=value[;column=value]", a
    list of "name:column=value" strings, or None for the dataset's condition column: its first treated value,
    then its control (each context named after its value)."""
    if contexts is None:
        roles = find_columns(adata.obs)
        if roles.condition is None or roles.control is None:
            raise InputError(
                "contexts",
                "were not given and the data has no condition column with a control value",
                "name contexts, e.g. {'interferon': 'stim=STIM', 'neutral': 'stim=CTRL'}",
            )
        treated = next(v for v in roles.values[roles.condition] if v != roles.control)
        return [(treated, {roles.condition: treated}), (roles.control, {roles.condition: roles.control})]
    if isinstance(contexts, str):
        contexts = [c for c in contexts.split(",") if c.strip()]
    out: list[tuple[str, dict[str, str]]] = []
    items = contexts.items() if isinstance(contexts, dict) else [_split_context(c) for c in contexts]
    for name, where in items:
        where = _parse_where(where, f"context {name!r}") if isinstance(where, str) else dict(where or {})
        out.append((str(name).strip(), {str(k): str(v) for k, v in where.items()}))
    names = [n for n, _ in out]
    if not out or len(set(names)) != len(names) or not all(names):
        raise InputError(
            "contexts",
            f"{names} must be one or more distinct, non-empty names",
            "write e.g. 'interferon:condition=stim' and 'neutral:condition=ctrl'",
        )
    return out


def _split_context(text: str) -> tuple[str, str]:
    name, sep, where = str(text).partition(":")
    if not sep or not name.strip() or "=" not in where:
        raise InputError(
            "context", f"{text!r} is not of the form NAME:COLUMN=VALUE", "write e.g. 'interferon:condition=stim'"
        )
    return name.strip(), where


# ------------------------------------------------------------------------------------------------ results
def model_facts(model) -> dict:
    """What the model was trained on, from its metadata (empty lists when it does not say)."""
    meta = model.meta
    held = meta.get("split", {}).get("held_out_perturbed")
    return {
        "name": model.name,
        "backend": model.backend.name,
        "data": meta.get("training", {}).get("data"),
        "labels": model.known_labels,
        "conditions": model.known_conditions,
        "perturbations": model.known_perturbations,
        "tasks": meta.get("tasks", []),
        "held_out": f"{held['condition']} {held['cell_type']} cells were never trained on" if held else None,
    }


def trained_on_text(facts: dict) -> str:
    """One plain paragraph on what the model was and was not trained on."""
    if not facts["perturbations"] and not facts["labels"]:
        return (
            f"Model {facts['name']} does not declare its training data, labels or perturbations; "
            "predictions for any perturbation are unverified."
        )
    parts = [f"Model {facts['name']} was trained on {facts['data'] or 'undeclared data'}"]
    if facts["labels"]:
        parts.append(f"cell types {', '.join(facts['labels'])}")
    if facts["conditions"]:
        parts.append(f"conditions {', '.join(facts['conditions'])}")
    text = "; ".join(parts) + ". "
    text += (
        f"The only perturbation(s) it was trained on: {', '.join(facts['perturbations'])}; any other "
        "perturbation is outside its training and is flagged, not scored. "
        if facts["perturbations"]
        else "It declares no perturbations. "
    )
    if facts["held_out"]:
        text += f"Held out of training: {facts['held_out']}. "
    if "perturbation_context" not in facts["tasks"]:
        text += "It was not trained with free-text perturbation contexts: contexts are sets of base cells."
    return text.strip()


@dataclass
class ScreenResult:
    """A finished screen: the ranked table (one row per perturbation item), the per-item table (one row per
    item and context), where everything was written, and this run's timing."""

    table: pd.DataFrame
    items: pd.DataFrame
    out_dir: Path
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list, repr=False)  # one per item and context, with per-cell scores

    @property
    def contexts(self) -> list[str]:
        """The context names, the split's two first."""
        return list(self.summary["contexts"])

    @property
    def scored(self) -> pd.DataFrame:
        """The ranked rows of the scored items."""
        return self.table[self.table["status"] == SCORED]

    @property
    def not_scored(self) -> dict[str, str]:
        """Item -> its status and why it was not scored."""
        return {
            r["item"]: f"{r['status']}: {r['reason']}" for r in self.table.to_dict("records") if r["status"] != SCORED
        }

    def ranking(self, top: int = 20) -> list[dict]:
        """The ``top`` scored items: shifts per context, the split and their intervals (5 decimals, NaN as None)."""
        keep = [
            "item",
            "perturbation",
            *[c for c in self.scored.columns if c.startswith(("shift_", "low_", "high_", "split"))],
        ]
        return self.scored[keep].round(5).replace({np.nan: None}).head(top).to_dict("records")


def _bootstrap_means(diffs: np.ndarray, n_boot: int, rng) -> np.ndarray:
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    return diffs[idx].mean(1)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _tables(
    records: list[dict], library: pd.DataFrame, contexts: list[str], n_boot: int, seed: int, level: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame(
        [
            {
                k: r.get(k)
                for k in (
                    "item",
                    "perturbation",
                    "context",
                    "status",
                    "n_cells",
                    "base_mean",
                    "predicted_mean",
                    "shift",
                    "shift_low",
                    "shift_high",
                    "reason",
                )
            }
            for r in records
        ]
    )
    by = {(r["item"], r["context"]): r for r in records}
    rows = []
    for i, lib in library.iterrows():
        row = {"item": lib["item"], "perturbation": lib["perturbation"]}
        recs = [by.get((lib["item"], c)) for c in contexts]
        statuses = {r["status"] for r in recs if r}
        row["status"] = (
            SCORED
            if statuses == {SCORED} and all(recs)
            else next((s for s in (UNSEEN, UNDECLARED) if s in statuses), "incomplete")
        )
        for c, r in zip(contexts, recs):
            ok = r is not None and r["status"] == SCORED
            row[f"shift_{c}"] = r["shift"] if ok else np.nan
            row[f"low_{c}"] = r["shift_low"] if ok else np.nan
            row[f"high_{c}"] = r["shift_high"] if ok else np.nan
        if len(contexts) >= 2 and row["status"] == SCORED:
            a, b = (np.asarray(r["diffs"], np.float64) for r in recs[:2])
            rng = np.random.default_rng([seed, i])
            boot = _bootstrap_means(a, n_boot, rng) - _bootstrap_means(b, n_boot, rng)
            row["split"] = float(a.mean() - b.mean())
            row["split_low"], row["split_high"] = _interval(boot, level)
            row["split_excludes_zero"] = bool(row["split_low"] > 0 or row["split_high"] < 0)
        elif len(contexts) >= 2:
            row.update(split=np.nan, split_low=np.nan, split_high=np.nan, split_excludes_zero=False)
        row["reason"] = "; ".join(sorted({r["reason"] for r in recs if r and r.get("reason")}))
        rows.append(row)
    table = pd.DataFrame(rows)
    order = "split" if len(contexts) >= 2 else f"shift_{contexts[0]}"
    table = table.sort_values([order], ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.where(table["status"] == SCORED, np.arange(1, len(table) + 1), 0))
    table["rank"] = table["rank"].astype(int)
    return table, items


# ---------------------------------------------------------------------------------------------- the screen
@dataclass
class _Run:
    """One screen being run: its model, program genes, base cells per context, items and what has been done."""

    model: object
    prog: GeneProgram
    genes: tuple[str, ...]
    k: int
    ctxs: list
    library: pd.DataFrame
    fingerprint: dict
    store: ResultStore
    seed: int
    n_boot: int
    level: float
    base: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def finish(self, task: dict, status: str, reason: str = "", **record) -> None:
        rec = {
            "item": task["item"],
            "perturbation": task["perturbation"],
            "context": task["context"],
            "status": status,
            "reason": reason,
            **record,
        }
        self.store.add(task["key"], task["item"], task["perturbation"], task["context"], status, rec)
        self.stats["items_run"] += 1


def _check_numbers(**values) -> None:
    for name, (value, low) in values.items():
        if int(value) < low:
            raise InputError(name, f"must be >= {low} (got {value})", f"pass {name}={max(low, 64)} or more")


def _program_genes(m, prog: GeneProgram, adata) -> tuple[str, ...]:
    universe = m.genes if m.genes else adata.var_names.astype(str).str.upper()
    genes = prog.restricted(universe)
    if len(genes) < 2:
        raise InputError(
            "program",
            f"{prog.name!r}: only {len(genes)} of its genes are in the model's vocabulary",
            "choose a program with genes the model knows",
        )
    return genes


def _base_cells(run: _Run, adata, cell_type, cell_type_key, n_cells: int) -> None:
    """The base cells of each context: the same cells for every perturbation."""
    for ci, (cname, where) in enumerate(run.ctxs):
        rows = select_cells(adata, where, cell_type, n_cells, run.seed + ci, cell_type_key, name=f"context {cname!r}")
        texts, _, names = run.model.sentences(adata[rows], run.k)
        run.base[cname] = {
            "texts": texts,
            "names": list(map(str, names)),
            "scores": rank_scores(texts, run.genes, run.k),
        }


def _items(run: _Run) -> list[dict]:
    """Every (item, context) with its content key; the stats count those a previous run finished."""
    for _, lib in run.library.iterrows():
        for cname, where in run.ctxs:
            key = item_key(
                **run.fingerprint,
                item=lib["item"],
                perturbation=lib["perturbation"],
                context_text=lib["context_text"],
                context=cname,
                where=where,
                cells=run.base[cname]["names"],
            )
            run.tasks.append(
                {
                    "key": key,
                    "item": lib["item"],
                    "perturbation": lib["perturbation"],
                    "context_text": lib["context_text"],
                    "context": cname,
                }
            )
    done = run.store.keys()
    pending = [t for t in run.tasks if t["key"] not in done]
    run.stats.update(
        items_total=len(run.tasks),
        items_skipped_finished=len(run.tasks) - len(pending),
        items_run=0,
        cells_predicted=0,
        model_seconds=0.0,
        model_calls=0,
    )
    return pending


def _runnable(run: _Run, pending: list[dict], trust_undeclared: bool) -> list[dict]:
    """Items the model can score; the others are recorded as unseen (or undeclared) with the reason."""
    known, out = set(run.model.known_perturbations), []
    for t in pending:
        if known and t["perturbation"] not in known:
            run.finish(
                t,
                UNSEEN,
                f"{t['perturbation']!r} is not among the perturbations the model was trained on "
                f"({', '.join(sorted(known))})",
                n_cells=0,
            )
        elif not known and not trust_undeclared:
            run.finish(
                t,
                UNDECLARED,
                f"model {run.model.name} declares no perturbations; pass trust_undeclared=True to score",
                n_cells=0,
            )
        else:
            out.append(t)
    return out


def _chunks(run: _Run, runnable: list[dict], batch_cells: int) -> list[list[dict]]:
    """Items of one perturbation (and context text) grouped into model calls of at most ``batch_cells`` cells."""
    chunks: list[list[dict]] = []
    frame = pd.DataFrame(runnable, columns=["key", "item", "perturbation", "context_text", "context"])
    for _, group in frame.groupby(["perturbation", "context_text"], sort=False):
        cur, size = [], 0
        for t in group.to_dict("records"):
            n = len(run.base[t["context"]]["texts"])
            if cur and size + n > batch_cells:
                chunks.append(cur)
                cur, size = [], 0
            cur.append(t)
            size += n
        if cur:
            chunks.append(cur)
    return chunks


def _predict(run: _Run, chunk: list[dict], on_call) -> None:
    """One model call for a chunk; each item's shift of the program score with its bootstrap interval."""
    texts = [s for t in chunk for s in run.base[t["context"]]["texts"]]
    chunk_seed = run.seed + int(chunk[0]["key"][:7], 16)
    t0 = time.perf_counter()
    predicted = run.model.perturb(
        texts, chunk[0]["perturbation"], context=chunk[0]["context_text"] or None, seed=chunk_seed, on_call=on_call
    )
    dt = time.perf_counter() - t0
    run.stats.update(
        model_seconds=run.stats["model_seconds"] + dt,
        model_calls=run.stats["model_calls"] + 1,
        cells_predicted=run.stats["cells_predicted"] + len(texts),
    )
    pos = 0
    for t in chunk:
        b = run.base[t["context"]]
        pred = predicted[pos : pos + len(b["texts"])]
        pos += len(b["texts"])
        scores = rank_scores(pred, run.genes, run.k)
        diffs = scores - b["scores"]
        lo, hi = _interval(_bootstrap_means(diffs, run.n_boot, np.random.default_rng(int(t["key"][:8], 16))), run.level)
        run.finish(
            t,
            SCORED,
            n_cells=len(diffs),
            base_mean=float(b["scores"].mean()),
            predicted_mean=float(scores.mean()),
            shift=float(diffs.mean()),
            shift_low=lo,
            shift_high=hi,
            base_scores=b["scores"].tolist(),
            predicted_scores=scores.tolist(),
            diffs=diffs.tolist(),
            example=pred[0][:400],
            chunk_seed=chunk_seed,
            model_seconds_share_of_chunk=round(dt * len(diffs) / len(texts), 4),
        )


def _summary(run: _Run, table: pd.DataFrame, config: dict, seconds: float) -> dict:
    stats = run.stats
    stats.update(
        seconds=round(seconds, 3),
        model_seconds=round(stats["model_seconds"], 3),
        model_share=round(stats["model_seconds"] / seconds, 4) if seconds else None,
        cells_per_second=round(stats["cells_predicted"] / seconds, 3) if stats["cells_predicted"] else None,
    )
    facts = model_facts(run.model)
    ctxs = run.ctxs
    return {
        "config": config,
        "model": facts,
        "trained_on": trained_on_text(facts),
        "program": run.prog.name,
        "program_genes_used": list(run.genes),
        "program_genes_missing": [g for g in run.prog.genes if g not in run.genes],
        "contexts": {c: w for c, w in ctxs},
        "split": f"shift in {ctxs[0][0]} minus shift in {ctxs[1][0]}" if len(ctxs) >= 2 else None,
        "counts": {str(k): int(v) for k, v in table["status"].value_counts().to_dict().items()},
        "run": stats,
        "top": table.head(10).replace({np.nan: None}).to_dict("records"),
    }


def run_screen(
    adata,
    perturbations,
    contexts=None,
    program="mhc_i",
    *,
    out_dir,
    model=None,
    cell_type: str | None = None,
    cell_type_key: str | None = None,
    n_cells: int = 64,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    batch_cells: int = 1024,
    trust_undeclared: bool = False,
    settings=None,
    progress: bool = True,
    on_call=None,
) -> ScreenResult:
    """Run (or resume) a virtual screen and write the ranked table, per-item table and summary (plots:
    :func:`c2s_agent.pl.screen_ranking` and :func:`c2s_agent.pl.screen_distributions`). Writes
    ``adata.uns["c2s_screen"]``: the program, contexts, output folder and number of items per status.

    ``adata``: AnnData or a path / demo name; ``perturbations``: see :func:`load_library` (None: every
    perturbation the model declares); ``contexts``: see
    :func:`resolve_contexts` (the first two define the split: first minus second); ``program``: a program name,
    bundled gene set or gene list; ``model``: anything :func:`c2s_agent.models.load_model` takes, or a loaded
    model. ``batch_cells`` caps the cells per model call (items of one perturbation share calls).
    Re-running with the same ``out_dir`` and settings skips finished items.
    """
    from ..data import read
    from ..models import C2SModel, load_model

    t_start = time.perf_counter()
    adata = read(adata) if isinstance(adata, (str, Path)) else adata
    _check_numbers(n_cells=(n_cells, 2), n_boot=(n_boot, 10), batch_cells=(batch_cells, 1))
    library = None if perturbations is None else load_library(perturbations)
    ctxs = resolve_contexts(adata, contexts)
    m = model if isinstance(model, C2SModel) else load_model(model, settings)
    if library is None:
        if not m.known_perturbations:
            raise InputError(
                "perturbations", f"were not given and model {m.name} declares none", "name the perturbations to screen"
            )
        library = load_library(m.known_perturbations)
    prog: GeneProgram = get_program(program, settings)
    genes = _program_genes(m, prog, adata)
    if (library["context_text"] != "").any() and "perturbation_context" not in m.meta.get(
        "tasks", ["perturbation_context"]
    ):
        raise InputError(
            "context_text",
            f"model {m.name} was not trained with perturbation contexts",
            "drop the context_text column, or use a model trained with context prompts",
        )
    k = int(m.top_k["perturbation"])
    fingerprint = {
        "model": m.name,
        "model_id": m.backend.model_id,
        "backend": m.backend.name,
        "model_path": str(getattr(m.backend, "path", "")),
        "program": prog.name,
        "genes": list(genes),
        "n_cells": n_cells,
        "seed": seed,
        "k": k,
        CELL_TYPE: cell_type,
        "method": "rank",
    }
    out_dir = Path(out_dir)
    run = _Run(m, prog, genes, k, ctxs, library, fingerprint, ResultStore(out_dir), seed, n_boot, level)
    config = {
        **fingerprint,
        "contexts": dict(ctxs),
        "n_items": len(library),
        "n_boot": n_boot,
        "level": level,
        "program_source": prog.source,
        "trust_undeclared": trust_undeclared,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=str))
    _base_cells(run, adata, cell_type, cell_type_key, n_cells)
    runnable = _runnable(run, _items(run), trust_undeclared)
    bar = _progress(
        progress,
        len(runnable),
        f"screen: {len(runnable)} items to run, {run.stats['items_skipped_finished']} already finished",
    )
    try:
        for chunk in _chunks(run, runnable, batch_cells):
            _predict(run, chunk, on_call)
            bar.advance(len(chunk))
    finally:
        bar.stop()
    records = run.store.records([t["key"] for t in run.tasks])
    run.store.close()
    table, items = _tables(records, library, [c for c, _ in ctxs], n_boot, seed, level)
    summary = _summary(run, table, config, time.perf_counter() - t_start)
    adata.uns[SCREEN] = {
        "program": prog.name,
        "contexts": [c for c, _ in ctxs],
        "out_dir": str(out_dir),
        "counts": summary["counts"],
    }
    return ScreenResult(table, items, out_dir, summary, _write(out_dir, table, items, summary), records)


class _NoBar:
    def advance(self, n):
        pass

    def stop(self):
        pass


class _Bar:
    def __init__(self, total: int, text: str):
        from rich.console import Console
        from rich.progress import Progress

        self.p = Progress(console=Console(stderr=True), transient=False)
        self.p.start()
        self.task = self.p.add_task(text, total=total)

    def advance(self, n):
        self.p.advance(self.task, n)

    def stop(self):
        self.p.stop()


def _progress(show: bool, total: int, text: str):
    return _Bar(total, text) if show and total else _NoBar()


def _write(out_dir: Path, table, items, summary) -> dict[str, Path]:
    files = {"ranked": out_dir / "ranked.csv", "items": out_dir / "items.csv", "summary": out_dir / "summary.json"}
    table.to_csv(files["ranked"], index=False)
    items.to_csv(files["items"], index=False)
    files["summary"].write_text(json.dumps(summary, indent=1, default=str))
    return files
