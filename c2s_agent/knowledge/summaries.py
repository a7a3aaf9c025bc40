"""Per-gene summaries of interaction partners, derived from ligand-receptor and protein-interaction records.

Summaries are made for every gene and every complex that takes part in a ligand-receptor record: they give
the semantic index one meaningful sentence per signalling gene ("IL6 (Interleukin-6): ligand for IL6R+IL6ST
...") while the hundreds of thousands of single protein pairs stay in the exact-lookup store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from .records import GeneSummary, Record

MAX_LISTED = 12
MAX_PPI = 15


def gene_summaries(records: Iterable[Record], gene_info: dict[str, dict] | None = None) -> list[GeneSummary]:
    """One :class:`GeneSummary` per gene or complex found in a ligand-receptor record."""
    gene_info = gene_info or {}
    lig, rec, other = defaultdict(dict), defaultdict(dict), defaultdict(dict)
    ppi: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, set] = defaultdict(set)
    members: dict[str, tuple[str, ...]] = {}
    for r in records:
        if r.kind == "ligand_receptor":
            a, b = r.ligand_genes, r.receptor_genes
            is_lr = r.directionality == "Ligand-Receptor"
            a_keys, b_keys = list(a), list(b)
            for name, genes, keys in ((r.ligand, a, a_keys), (r.receptor, b, b_keys)):
                if len(genes) > 1 or name not in genes:
                    members[name] = genes
                    keys.append(name)
            for g in a_keys:
                (lig if is_lr else other)[g]["+".join(b)] = b
                sources[g].add(r.source)
            for g in b_keys:
                (rec if is_lr else other)[g]["+".join(a)] = a
                sources[g].add(r.source)
        elif r.kind == "ppi":
            ppi[r.gene_a][r.gene_b] += r.weight
            ppi[r.gene_b][r.gene_a] += r.weight
            sources[r.gene_a].add(r.source)
            sources[r.gene_b].add(r.source)
    out = []
    for g in sorted(set(lig) | set(rec) | set(other)):
        partners = [p for p, _ in ppi[g].most_common(MAX_PPI)]
        lists = {k: list(d[g]) for k, d in (("ligand_of", lig), ("receptor_of", rec), ("other_lr", other))}
        own = list(members.get(g, (g,)))
        all_genes = own + [x for d in (lig, rec, other) for genes in d[g].values() for x in genes] + partners
        protein = f"complex of {' + '.join(own)}" if g in members else gene_info.get(g, {}).get("protein", "")
        shown = {
            k: v[:MAX_LISTED] + ([f"... ({len(v)} in total)"] if len(v) > MAX_LISTED else []) for k, v in lists.items()
        }
        out.append(
            GeneSummary(
                id=f"summary:{g}",
                source="derived from " + ", ".join(sorted(sources[g])),
                gene=g,
                protein=protein,
                ppi_partners=tuple(partners),
                n_ppi=len(ppi[g]),
                genes=tuple(dict.fromkeys(all_genes)),
                attrs={"partners": lists},
                **{k: tuple(v) for k, v in shown.items()},
            )
        )
    return out
