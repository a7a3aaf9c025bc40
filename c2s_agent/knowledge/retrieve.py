"""Hybrid retrieval: exact gene-symbol / alias / complex lookup plus semantic search, merged and ranked.

Exact matches score above semantic ones (1 + a kind- and evidence-based bonus, more when a record names
several of the query genes); a record found both ways adds its cosine similarity. Pairs reported by several
sources (BioGRID and IntAct) are merged into one hit that lists every source.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ..errors import InputError

TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_./]*[A-Za-z0-9]|[A-Za-z0-9]")
SEMANTIC_POOL = 100


class Hit(BaseModel):
    """One retrieved record with its provenance and how it was found."""

    id: str
    source: str
    kind: str
    text: str
    genes: list[str]
    score: float
    match: list[str]
    also_in: list[str] = []
    attrs: dict = {}


def _looks_like_gene(token: str) -> bool:
    """Symbols are written in capitals or carry digits; plain lower-case words ("cat", "set") are not genes."""
    return any(c.isdigit() for c in token) or token.isupper() or any(c.isupper() for c in token[1:])


class KnowledgeBase:
    """A loaded index: the record store, the FAISS index over semantic records and a lazy query embedder."""

    def __init__(self, folder: Path, threads: int = 0):
        import json

        import faiss

        from .embed import Embedder
        from .store import Store

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.store = Store(self.folder)
        self.index = faiss.read_index(str(self.folder / "index.faiss"))
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = 64
        self.sem_rows = np.load(self.folder / "sem_rows.npy")
        self.complexes = {a for a, genes in self.store.aliases.items() if "_" in a or len(genes) > 1}
        self._ligand_summary: np.ndarray | None = None
        self.embedder = Embedder(threads=threads)
        faiss.omp_set_num_threads(1)

    # ------------------------------------------------------------------ genes
    def resolve(self, token: str) -> list[str]:
        """Symbols a token names: itself if it is a known symbol, else its alias or complex members."""
        t = token.upper()
        if t in self.store.gene_index:
            return [t]
        return list(self.store.aliases.get(t, []))

    def genes_in(self, text: str) -> list[str]:
        """Known gene symbols (or aliases, complex names) written in a free-text query."""
        return list(dict.fromkeys(g for unit in self.gene_units(text) for g in unit))

    def gene_units(self, text: str) -> list[tuple[str, ...]]:
        """The symbols each gene-like token of a query names (a complex name is one unit of several genes)."""
        units = []
        for tok in TOKEN_RE.findall(text):
            if len(tok) < 2 or not (_looks_like_gene(tok) or tok.upper() in self.complexes):
                continue
            symbols = tuple(self.resolve(tok))
            if symbols and symbols not in units:
                units.append(symbols)
        return units

    # ------------------------------------------------------------------ scoring
    def _exact(self, units: list[tuple[str, ...]]) -> dict[int, float]:
        """Exact-match scores: 1 + a bonus by kind and evidence; +1 when a record names two or more query units."""
        store, kinds = self.store, self.store.kinds
        kind_all, weight_all = store.kind, store.weight
        indptr, gidx = store.genes_indptr, store.genes_idx
        scores: dict[int, float] = {}
        counts: dict[int, int] = {}
        for unit in units:
            best: dict[int, float] = {}
            for g in unit:
                rows = store.rows_with_gene(g)
                if not len(rows):
                    continue
                kind, weight = kind_all[rows], weight_all[rows]
                bonus = np.full(len(rows), 0.3, dtype=np.float64)
                for code, name in enumerate(kinds):
                    sel = kind == code
                    if not sel.any():
                        continue
                    if name == "ligand_receptor":
                        bonus[sel] = 1.0
                    elif name == "gene_summary":
                        bonus[sel] = np.where(gidx[indptr[rows[sel]]] == store.gene_index[g], 1.2, 0.4)
                    elif name == "ppi":
                        bonus[sel] = 0.5 + 0.4 * np.minimum(1.0, np.log1p(weight[sel]) / math.log1p(20))
                    elif name == "gene_set":
                        bonus[sel] = 0.5 - 0.3 * np.minimum(1.0, (indptr[rows[sel] + 1] - indptr[rows[sel]]) / 500)
                for r, b in zip(rows.tolist(), bonus.tolist()):
                    if b > best.get(r, -1.0):
                        best[r] = b
            for r, b in best.items():
                scores[r] = max(scores.get(r, 0.0), 1.0 + b)
                counts[r] = counts.get(r, 0) + 1
        for r, c in counts.items():
            if c > 1:
                scores[r] += 1.0 + 0.1 * min(c - 2, 5)
        return scores

    def _semantic(self, query: str, k: int) -> dict[int, float]:
        vec = self.embedder.query(query)[None, :]
        sims, idx = self.index.search(vec, min(k, self.index.ntotal))
        return {int(self.sem_rows[i]): float(s) for s, i in zip(sims[0], idx[0]) if i >= 0}

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str | None = None,
        genes: list[str] | None = None,
        top_k: int = 10,
        sources: list[str] | None = None,
        kinds: list[str] | None = None,
        exact: bool = True,
        semantic: bool = True,
    ) -> list[Hit]:
        """Retrieve up to ``top_k`` hits for a free-text query and/or explicit genes.

        ``sources`` and ``kinds`` filter (a source matches when its name contains the given text, any case).
        ``exact=False`` or ``semantic=False`` switch one path off.
        """
        if not query and not genes:
            raise InputError("query", "is empty", "give a question or at least one gene symbol")
        if top_k < 1:
            raise InputError("top_k", f"must be >= 1 (got {top_k})", "ask for at least one hit")
        bad = [k for k in kinds or [] if k not in self.store.kinds]
        if bad:
            raise InputError(f"kind {bad[0]!r}", "is not in the knowledge base", f"use one of {self.store.kinds}")
        units = [tuple(self.resolve(g)) for g in genes or []]
        units = [u for u in units if u]
        if genes and not units and not query:
            raise InputError(
                f"genes {genes[:5]}",
                "match no gene symbol, alias or complex in the knowledge base",
                "use HGNC symbols such as IL6, CXCL10 or STAT1",
            )
        if query and exact:
            units += [u for u in self.gene_units(query) if u not in units]
        ex = self._exact(units) if exact else {}
        allowed = self._allowed(sources, kinds)
        sem: dict[int, float] = {}
        if query and semantic:
            pool = SEMANTIC_POOL if allowed is None else min(self.index.ntotal, 10 * SEMANTIC_POOL)
            sem = self._semantic(query, max(pool, top_k))
        scores = {r: ex.get(r, 0.0) + sem.get(r, 0.0) for r in {**ex, **sem}}
        if sem and (not kinds or "gene_summary" in kinds):
            self._collapse(scores, ex, sem, 3 * top_k)
        rows = np.fromiter(scores, dtype=np.int64, count=len(scores))
        if allowed is not None and len(rows):
            rows = rows[allowed[rows]]
        vals = np.array([scores[r] for r in rows.tolist()])
        order = rows[np.argsort(-vals, kind="stable")]
        return self._hits(order, scores, ex, sem, top_k)

    def ligand_summary(self) -> np.ndarray:
        """Row of each ligand-receptor record's ligand summary (-1 for other rows), computed on first use."""
        if self._ligand_summary is None:
            st = self.store
            out = np.full(len(st), -1, dtype=np.int64)
            kinds = st.kinds
            if "ligand_receptor" in kinds and "gene_summary" in kinds:
                summaries = {st.ids[r]: r for r in np.flatnonzero(st.kind == kinds.index("gene_summary")).tolist()}
                for r in np.flatnonzero(st.kind == kinds.index("ligand_receptor")).tolist():
                    out[r] = summaries.get(f"summary:{st.attrs(r).get('ligand')}", -1)
            self._ligand_summary = out
        return self._ligand_summary

    def _collapse(self, scores: dict, ex: dict, sem: dict, window: int) -> None:
        """Several semantic-only pair records of one ligand become that ligand's summary (which lists every
        partner): the top hits then name distinct ligands instead of near-identical pairs."""
        group = self.ligand_summary()
        top = sorted(sem, key=lambda r: -scores[r])[:window]
        members: dict[int, list[int]] = {}
        for r in top:
            if r not in ex and group[r] >= 0:
                members.setdefault(int(group[r]), []).append(r)
        for summary, rows in members.items():
            if len(rows) < 2:
                continue
            best = max(scores.pop(r) for r in rows)
            for r in rows:
                sem.pop(r, None)
            scores[summary] = max(scores.get(summary, 0.0), best)
            sem[summary] = max(sem.get(summary, 0.0), best)

    def _allowed(self, sources, kinds) -> np.ndarray | None:
        if not sources and not kinds:
            return None
        ok = np.ones(len(self.store), dtype=bool)
        if kinds:
            codes = [self.store.kinds.index(k) for k in kinds]
            ok &= np.isin(np.asarray(self.store.kind), codes)
        if sources:
            want = [s.lower() for s in sources]
            codes = [i for i, name in enumerate(self.store.sources) if any(w in name.lower() for w in want)]
            if not codes:
                raise InputError(
                    f"source {sources[0]!r}",
                    "matches no source in the knowledge base",
                    f"use part of one of {self.store.sources}",
                )
            ok &= np.isin(np.asarray(self.store.source), codes)
        return ok

    def _hits(self, order: np.ndarray, scores: dict, ex: dict, sem: dict, top_k: int) -> list[Hit]:
        store, hits, seen = self.store, [], {}
        for r in order[: 3 * top_k + 20].tolist():  # a window past top_k collects the other sources of a pair
            kind = store.kinds[store.kind[r]]
            if len(hits) >= top_k and kind != "ppi":
                continue
            genes = store.genes(r)
            source = store.sources[store.source[r]]
            key = ("ppi", frozenset(genes)) if kind == "ppi" else ("id", r)
            if key in seen:
                seen[key].also_in.append(source)
                continue
            if len(hits) >= top_k:
                continue
            match = [m for m, d in (("exact", ex), ("semantic", sem)) if r in d]
            hit = Hit(
                id=store.ids[r],
                source=source,
                kind=kind,
                text=store.texts[r],
                genes=genes,
                score=round(float(scores[r]), 4),
                match=match,
                attrs=store.attrs(r),
            )
            seen[key] = hit
            hits.append(hit)
        return hits

    def partners(self, gene: str, kinds: tuple[str, ...] = ("ligand_receptor", "ppi")) -> dict[str, list[str]]:
        """Partner genes of one gene with the sources reporting each pair, from exact records only."""
        out: dict[str, list[str]] = {}
        for g in self.resolve(gene):
            for r in self.store.rows_with_gene(g).tolist():
                kind = self.store.kinds[self.store.kind[r]]
                if kind not in kinds:
                    continue
                for p in self.store.genes(r):
                    if p != g:
                        out.setdefault(p, []).append(self.store.sources[self.store.source[r]])
        return out


def neighbourhood(kb: KnowledgeBase, genes: list[str], max_partners: int = 25, min_sources: int = 1):
    """Partners of each gene from protein-interaction and ligand-receptor records: one row per (gene, partner)
    with the supporting sources, their number and the summed record count; best supported first.
    ``table.attrs["n_total"]`` holds each gene's number of partners before the cut."""
    import pandas as pd

    rows, totals, unknown = [], {}, []
    lr_code = kb.store.kinds.index("ligand_receptor") if "ligand_receptor" in kb.store.kinds else -1
    ppi_code = kb.store.kinds.index("ppi") if "ppi" in kb.store.kinds else -1
    for query in genes:
        symbols = kb.resolve(query)
        if not symbols:
            unknown.append(query)
        for g in symbols:
            support: dict[str, dict] = {}
            for r in kb.store.rows_with_gene(g).tolist():
                if kb.store.kind[r] not in (lr_code, ppi_code):
                    continue
                src = kb.store.sources[kb.store.source[r]]
                for p in kb.store.genes(r):
                    if p == g:
                        continue
                    s = support.setdefault(p, {"sources": set(), "n_records": 0.0})
                    s["sources"].add(src)
                    s["n_records"] += float(kb.store.weight[r])
            ranked = sorted(
                ((p, s) for p, s in support.items() if len(s["sources"]) >= min_sources),
                key=lambda x: (-len(x[1]["sources"]), -x[1]["n_records"], x[0]),
            )
            totals[g] = len(ranked)
            rows += [
                {
                    "gene": g,
                    "partner": p,
                    "n_sources": len(s["sources"]),
                    "n_records": int(s["n_records"]),
                    "sources": " | ".join(sorted(s["sources"])),
                }
                for p, s in ranked[:max_partners]
            ]
    if unknown and len(unknown) == len(genes):
        raise InputError(
            f"genes {unknown[:5]}",
            "match no gene symbol, alias or complex in the knowledge base",
            "use HGNC symbols such as STAT1, ISG15 or JAK1",
        )
    table = pd.DataFrame(rows, columns=["gene", "partner", "n_sources", "n_records", "sources"])
    table.attrs["n_total"] = totals
    table.attrs["unknown"] = unknown
    return table
