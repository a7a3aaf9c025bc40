"""Gene-set lookup: by name, by topic (semantic search over gene-set records) or by overlap with a gene list
(hypergeometric test against the union of all bundled gene sets)."""

from __future__ import annotations

from ..errors import InputError
from .sources import load_gene_sets


def lookup_gene_sets(query: str | None = None, genes: list[str] | None = None, top_k: int = 10, kb=None) -> list[dict]:
    """Gene sets overlapping ``genes`` (best hypergeometric p first) or, without genes, matching a name or topic;
    each with name, collection, source, size, overlap, p-value (overlap only) and members."""
    from scipy.stats import hypergeom

    sets = load_gene_sets()
    rows: list[dict] = []
    if genes:
        universe = {g for members in sets.values() for g in members}
        query_genes = {g.upper() for g in genes}
        known = query_genes & universe
        if not known:
            raise InputError(
                f"genes {sorted(query_genes)[:5]}",
                "are in no bundled gene set",
                "use HGNC symbols such as ISG15, STAT1 or MX1",
            )
        for name, members in sets.items():
            overlap = sorted(known & set(members))
            if overlap:
                p = float(hypergeom.sf(len(overlap) - 1, len(universe), len(members), len(known)))
                rows.append(_row(name, members, overlap, p))
        rows.sort(key=lambda r: (r["pvalue"], -len(r["overlap"])))
    if query and not genes:  # with genes the overlap test decides; the question's words only phrase it
        q = query.strip().upper().replace(" ", "_")
        named = [n for n in sets if n.upper() == q] + [n for n in sets if q in n.upper() and n.upper() != q]
        rows = [_row(n, sets[n]) for n in named]
        if kb is not None and len(rows) < top_k:
            for hit in kb.search(query=query, kinds=["gene_set"], top_k=top_k, exact=False):
                name = hit.attrs.get("name", hit.id.split(":", 1)[-1])
                if name in sets and name not in named:
                    rows.append(_row(name, sets[name]))
    return rows[:top_k]


def _row(name: str, members, overlap=None, pvalue=None) -> dict:
    return {
        "name": name,
        "collection": getattr(members, "collection", ""),
        "source": getattr(members, "source", ""),
        "size": len(members),
        "overlap": overlap or [],
        "pvalue": pvalue,
        "genes": list(members),
    }
