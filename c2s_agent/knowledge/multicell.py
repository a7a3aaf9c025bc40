"""Multi-cell reasoning with knowledge: groups of cells (kNN neighbourhoods from ``obsm`` or chunks of the
clusters of an ``obs`` column) as one multi-cell prompt to a C2S model, asked the group's cell type by label
log-likelihood, once as it is and once with the ligand-receptor interactions expressed in the group injected
as text (retrieved from the knowledge base). The table says what the injection changed.

A pair is *expressed in a group* when every ligand and every receptor subunit is detected in at least
``min_fraction`` of the group's cells; pairs are ranked by the mean log1p(CP10k) of their weakest ligand and
receptor subunits. When the model lists its vocabulary, only pairs whose genes it knows are injected (other
genes would reach it as unknown tokens).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conventions.slots import CELL_TYPE, MULTICELL
from ..errors import InputError
from ..models.model import C2SModel

DEFAULT_CELLS = 4  # the embedded model sees at most 256 tokens: 4 cells x 40 genes plus knowledge fit
DEFAULT_GENES = 40


@dataclass(frozen=True)
class Group:
    """A group of cells: a name, what defines it (a cluster value or the centre cell's name) and row positions."""

    name: str
    label: str
    positions: tuple[int, ...]


@dataclass(frozen=True)
class Interaction:
    """A ligand-receptor record of the knowledge base (CellPhoneDB): subunit genes, its sentence and source."""

    id: str
    ligand_genes: tuple[str, ...]
    receptor_genes: tuple[str, ...]
    text: str
    source: str

    @property
    def prompt_text(self) -> str:
        """How the pair is written in a prompt: subunit symbols, "ligand -> receptor"."""
        return f"{' '.join(self.ligand_genes)} -> {' '.join(self.receptor_genes)}"


# ---------------------------------------------------------------------------------------------- groups
def neighbourhoods(
    adata, n_cells: int = DEFAULT_CELLS, use_rep: str | None = None, centers: Sequence[int] | None = None
) -> list[Group]:
    """One group per centre cell (default every cell): the centre and its ``n_cells - 1`` nearest cells in
    ``obsm[use_rep]`` (default ``X_pca``, computed from log1p CP10k when missing)."""
    from sklearn.neighbors import NearestNeighbors

    if not 1 <= n_cells <= adata.n_obs:
        raise InputError(
            "n_cells",
            f"must be between 1 and the number of cells ({adata.n_obs}); got {n_cells}",
            "use e.g. 4 cells per group",
        )
    X = _representation(adata, use_rep)
    centers = np.arange(adata.n_obs) if centers is None else np.asarray(centers, dtype=np.int64)
    _, idx = NearestNeighbors(n_neighbors=n_cells).fit(X).kneighbors(X[centers])
    names = adata.obs_names.astype(str)
    out = []
    for c, row in zip(centers, idx):
        row = [int(c)] + [int(i) for i in row if i != c][: n_cells - 1]  # the centre first, even among duplicates
        out.append(Group(f"nbhd:{names[c]}", names[c], tuple(row)))
    return out


def _representation(adata, use_rep: str | None) -> np.ndarray:
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise InputError(
                f"use_rep {use_rep!r}", "is not in adata.obsm", f"use one of {list(adata.obsm)} or omit it"
            )
        return np.asarray(adata.obsm[use_rep], dtype=np.float32)
    if "X_pca" in adata.obsm:
        return np.asarray(adata.obsm["X_pca"], dtype=np.float32)
    import scanpy as sc

    from ..data import prepare

    data = prepare(adata, copy=True)
    sc.pp.pca(data, n_comps=min(30, data.n_obs - 1, data.n_vars - 1), random_state=0)
    return np.asarray(data.obsm["X_pca"], dtype=np.float32)


def clusters(
    adata, groupby: str, n_cells: int = DEFAULT_CELLS, values: Sequence[str] | None = None, seed: int = 0
) -> list[Group]:
    """Each cluster of ``obs[groupby]`` (or only ``values``) cut into groups of ``n_cells`` cells in a seeded
    random order; a last group smaller than half of ``n_cells`` is dropped."""
    mask = _mask(adata, groupby, values)
    col = adata.obs[groupby].astype(str).to_numpy()
    wanted = sorted(set(col[mask])) if values is None else list(dict.fromkeys(values))
    rng = np.random.default_rng(seed)
    out = []
    for v in wanted:
        rows = rng.permutation(np.flatnonzero(col == v))
        for k in range(0, len(rows), n_cells):
            chunk = rows[k : k + n_cells]
            if len(chunk) * 2 >= n_cells:
                out.append(Group(f"{v}:{k // n_cells}", v, tuple(int(i) for i in chunk)))
    return out


# ---------------------------------------------------------------------------------------------- knowledge
def lr_records(kb) -> list[Interaction]:
    """Every ligand-receptor record of a loaded knowledge base (:func:`c2s_agent.knowledge.load`)."""
    store = kb.store
    if "ligand_receptor" not in store.kinds:
        return []
    rows = np.flatnonzero(store.kind == store.kinds.index("ligand_receptor"))
    out = []
    for r in rows.tolist():
        attrs = store.attrs(r)
        out.append(
            Interaction(
                store.ids[r],
                tuple(attrs["ligand_genes"]),
                tuple(attrs["receptor_genes"]),
                store.texts[r],
                store.sources[store.source[r]],
            )
        )
    return out


def group_interactions(
    adata,
    groups: Sequence[Group],
    records: Sequence[Interaction],
    genes: Sequence[str] | None = None,
    min_fraction: float = 0.5,
    max_interactions: int = 6,
) -> list[list[Interaction]]:
    """For each group, the (at most ``max_interactions``) pairs expressed in it, strongest first; ``genes``
    restricts pairs to those whose genes are all in it (e.g. the model's vocabulary)."""
    import scipy.sparse as sp

    from ..data import prepare
    from .lr import complex_min, subunit_matrix

    if not 0 < min_fraction <= 1:
        raise InputError("min_fraction", f"must be in (0, 1] (got {min_fraction})", "use e.g. 0.5")
    var = pd.Index(adata.var_names.astype(str).str.upper())
    present = set(var[~var.duplicated()]) & (set(map(str.upper, genes)) if genes is not None else set(var))
    recs = [r for r in records if set(r.ligand_genes) <= present and set(r.receptor_genes) <= present]
    recs = list({(r.ligand_genes, r.receptor_genes): r for r in recs}.values())  # one record per pair
    if not recs or not groups:
        return [[] for _ in groups]
    needed = sorted({g for r in recs for g in (*r.ligand_genes, *r.receptor_genes)})
    pos = {g: i for i, g in enumerate(needed)}
    cols = var.get_indexer(needed)
    X = sp.csr_matrix(prepare(adata, copy=True).X, dtype=np.float32)[:, cols]  # CP10k over all genes
    member = sp.csr_matrix(
        (
            np.ones(sum(len(g.positions) for g in groups), np.float32),
            ([i for i, g in enumerate(groups) for _ in g.positions], [p for g in groups for p in g.positions]),
        ),
        shape=(len(groups), adata.n_obs),
    )
    size = np.asarray(member.sum(1)).ravel()[:, None]
    mean = np.asarray((member @ X).todense()).T / size.T  # genes x groups
    frac = np.asarray((member @ (X > 0).astype(np.float32)).todense()).T / size.T
    lig, rec = (
        subunit_matrix([r.ligand_genes for r in recs], pos),
        subunit_matrix([r.receptor_genes for r in recs], pos),
    )
    expressed = (complex_min(frac, lig) >= min_fraction) & (complex_min(frac, rec) >= min_fraction)
    score = np.where(expressed, (complex_min(mean, lig) + complex_min(mean, rec)) / 2, -np.inf)  # pairs x groups
    out = []
    for j in range(len(groups)):
        order = np.argsort(-score[:, j], kind="stable")[:max_interactions]
        out.append([recs[i] for i in order if np.isfinite(score[i, j])])
    return out


# ---------------------------------------------------------------------------------------------- scoring
def score_groups(
    model: C2SModel,
    adata,
    groups: Sequence[Group],
    interactions: Sequence[Sequence[Interaction]] | None,
    labels: Sequence[str] | None = None,
    top_k: int = DEFAULT_GENES,
    on_call=None,
) -> np.ndarray:
    """(groups x labels) probabilities of each candidate cell type after each group's multi-cell prompt, with
    the group's interactions injected when ``interactions`` is given (a group without any gets none)."""
    import time

    labels = model._candidate_labels(labels)
    rows = sorted({p for g in groups for p in g.positions})
    texts, _, _ = model.sentences(adata[rows], top_k)
    at = dict(zip(rows, texts))
    prompts = []
    for i, g in enumerate(groups):
        inter = [x.prompt_text for x in interactions[i]] if interactions is not None else None
        prompts.append(model.multicell_prompt([at[p] for p in g.positions], range(len(g.positions)), inter, top_k))
    cont = [model.prompts.response(CELL_TYPE, label=model._token(x)) for x in labels]
    t0 = time.perf_counter()
    scores = model.backend.score_labels(prompts, cont)
    model._record(on_call, "multicell", len(prompts), t0, prompt_tokens=scores.n_tokens)
    lp = scores.logprobs - scores.logprobs.max(1, keepdims=True)
    return np.exp(lp) / np.exp(lp).sum(1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row, in nats."""
    p, q = np.clip(p, 1e-12, 1), np.clip(q, 1e-12, 1)
    return (p * np.log(p / q)).sum(1)


def reason(
    adata,
    groups: Sequence[Group],
    model: C2SModel,
    records: Sequence[Interaction],
    labels=None,
    top_k: int = DEFAULT_GENES,
    min_fraction: float = 0.5,
    max_interactions: int = 6,
    on_call=None,
) -> pd.DataFrame:
    """One row per group: its most likely cell type without and with the injected interactions, both
    probabilities, the KL divergence between the two label distributions and the interactions injected.
    Per-label probabilities are in ``df.attrs["p_without"]`` / ``df.attrs["p_with"]`` (groups x labels)."""
    labels = model._candidate_labels(labels)
    inter = group_interactions(adata, groups, records, model.genes, min_fraction, max_interactions)
    p0 = score_groups(model, adata, groups, None, labels, top_k, on_call)
    p1 = score_groups(model, adata, groups, inter, labels, top_k, on_call)
    lab = np.asarray(labels, dtype=object)
    df = pd.DataFrame(
        {
            "group": [g.name for g in groups],
            "defined_by": [g.label for g in groups],
            "n_cells": [len(g.positions) for g in groups],
            "cells": [",".join(adata.obs_names[list(g.positions)].astype(str)) for g in groups],
            "n_interactions": [len(x) for x in inter],
            "interactions": ["; ".join(i.prompt_text for i in x) for x in inter],
            "without_knowledge": lab[p0.argmax(1)],
            "p_without": p0.max(1),
            "with_knowledge": lab[p1.argmax(1)],
            "p_with": p1.max(1),
            "kl_with_vs_without": kl_divergence(p1, p0),
        }
    )
    df["changed"] = df.without_knowledge != df.with_knowledge
    df.attrs.update(labels=list(labels), p_without=p0, p_with=p1, sources=sorted({i.source for x in inter for i in x}))
    return df


def multicell(
    adata,
    model=None,
    groupby: str | None = None,
    values: Sequence[str] | None = None,
    mode: str = "neighbourhood",
    n_cells: int = DEFAULT_CELLS,
    top_k: int = DEFAULT_GENES,
    use_rep: str | None = None,
    max_groups: int = 100,
    min_fraction: float = 0.5,
    max_interactions: int = 6,
    seed: int = 0,
    kb=None,
    settings=None,
    on_call=None,
    key_added: str = MULTICELL,
) -> pd.DataFrame:
    """Scanpy-style multi-cell reasoning with knowledge: groups of ``n_cells`` cells -- kNN neighbourhoods
    around the cells whose ``obs[groupby]`` is in ``values`` (``mode="neighbourhood"``; every cell when no
    ``groupby``) or chunks of those clusters (``mode="cluster"``) -- at most ``max_groups`` (a seeded sample),
    asked their cell type with and without the ligand-receptor interactions of the knowledge base ``kb``
    (default: loaded for ``settings``) that they express. The table (see :func:`reason`) also goes to
    ``adata.uns[key_added]``."""
    from ..models.tl import get_model
    from . import load

    if mode not in ("neighbourhood", "cluster"):
        raise InputError("mode", f"{mode!r} is not a grouping", "use 'neighbourhood' or 'cluster'")
    if max_groups < 1:
        raise InputError("max_groups", f"must be >= 1 (got {max_groups})", "use e.g. 100")
    m = get_model(model, settings)
    rng = np.random.default_rng(seed)
    if mode == "cluster":
        if groupby is None:
            raise InputError(
                "groupby", "is needed to reason over clusters", "name an obs column, e.g. groupby='cell_type'"
            )
        groups = clusters(adata, groupby, n_cells, values, seed)
        if len(groups) > max_groups:
            groups = [groups[i] for i in np.sort(rng.choice(len(groups), max_groups, replace=False))]
    else:
        if groupby is not None:
            centers = np.flatnonzero(_mask(adata, groupby, values))
        elif values is not None:
            raise InputError("values", "were given without groupby", "also name the obs column they belong to")
        else:
            centers = np.arange(adata.n_obs)
        if len(centers) > max_groups:
            centers = np.sort(rng.choice(centers, max_groups, replace=False))
        groups = neighbourhoods(adata, n_cells, use_rep, centers)
    records = lr_records(kb if kb is not None else load(settings, progress=False))
    df = reason(
        adata,
        groups,
        m,
        records,
        top_k=top_k,
        min_fraction=min_fraction,
        max_interactions=max_interactions,
        on_call=on_call,
    )
    adata.uns[key_added] = {
        "params": {
            "mode": mode,
            "groupby": groupby or "",
            "values": list(values or []),
            "n_cells": n_cells,
            "top_k": top_k,
            "max_groups": max_groups,
            "min_fraction": min_fraction,
            "max_interactions": max_interactions,
            "seed": seed,
            "model": m.name,
            "sources": df.attrs["sources"],
        },
        "table": df,
    }
    return df


def _mask(adata, groupby: str, values: Sequence[str] | None) -> np.ndarray:
    """Cells whose ``obs[groupby]`` is one of ``values`` (every cell when None)."""
    if groupby not in adata.obs.columns:
        raise InputError(
            f"groupby {groupby!r}", "is not a column of adata.obs", f"use one of {list(adata.obs.columns)}"
        )
    col = adata.obs[groupby].astype(str)
    if values is None:
        return np.ones(adata.n_obs, bool)
    missing = [v for v in values if v not in set(col)]
    if missing:
        raise InputError(f"values {missing}", f"are not values of obs[{groupby!r}]", f"use some of {sorted(set(col))}")
    return col.isin(list(values)).to_numpy()


def agreement_with(adata, df: pd.DataFrame, column: str) -> tuple[float, float]:
    """How often the answers without and with knowledge equal the majority ``obs[column]`` label of each group's
    cells; adds that label to ``df`` as ``majority_<column>``."""
    labels = adata.obs[column].astype(str)
    df[f"majority_{column}"] = [labels[c.split(",")].value_counts().index[0] for c in df.cells]
    truth = df[f"majority_{column}"]
    return float((df.without_knowledge == truth).mean()), float((df.with_knowledge == truth).mean())


@dataclass
class MulticellSummary:
    """What injecting the interactions changed over the groups of a :func:`multicell` table: the answers
    (cell type -> groups) without and with them, and agreement with the majority ``obs[compared_with]`` label."""

    n_groups: int
    n_groups_with_interactions: int
    answers_without: dict[str, int]
    answers_with: dict[str, int]
    fraction_changed: float
    mean_kl: float
    compared_with: str | None
    accuracy_without: float | None
    accuracy_with: float | None
    top_interactions: list[str]


def multicell_summary(adata, df: pd.DataFrame, column: str | None = None, top: int = 10) -> MulticellSummary:
    """Summarise a :func:`multicell` table ``df``: answer counts, changes, mean KL, the ``top`` injected pairs
    and, with ``column``, agreement with each group's majority label (see :func:`agreement_with`)."""
    acc0, acc1 = agreement_with(adata, df, column) if column else (None, None)
    pairs = Counter(p for s in df.interactions for p in s.split("; ") if p).most_common(top)
    return MulticellSummary(
        n_groups=len(df),
        n_groups_with_interactions=int((df.n_interactions > 0).sum()),
        answers_without={str(k): int(v) for k, v in df.without_knowledge.value_counts().items()},
        answers_with={str(k): int(v) for k, v in df.with_knowledge.value_counts().items()},
        fraction_changed=float(df.changed.mean()),
        mean_kl=float(df.kl_with_vs_without.mean()),
        compared_with=column,
        accuracy_without=acc0,
        accuracy_with=acc1,
        top_interactions=[p for p, _ in pairs],
    )


def method(model: C2SModel, n_cells: int) -> str:
    """How :func:`multicell` asks the model, in words (for reports)."""
    trained = "multicell" in model.meta.get("tasks", [])
    return (
        f"{model.name} scored every known cell type by log-likelihood after a multi-cell prompt of {n_cells} cell "
        "sentences, once as is and once with the CellPhoneDB ligand-receptor pairs the group expresses (every "
        "subunit in >= half its cells) injected as text"
        + (
            ""
            if trained
            else "; this model was trained on single-cell prompts only, so multi-cell prompts and "
            "injected knowledge are outside its training"
        )
    )
