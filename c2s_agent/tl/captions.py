"""Captions for cell groups, composed from evidence: marker genes, C2S-predicted types (when annotation ran),
Cell Ontology definitions and curated interactions of the markers. No generative language model writes them;
each caption says so and names its parts, so every phrase can be checked against its source."""

from __future__ import annotations

from pydantic import BaseModel, Field

METHOD = ("composed by a template from marker genes (t-test), C2S-predicted types, Cell Ontology definitions and "
          "CellPhoneDB/BioGRID/IntAct records; no language model generated the text")


ABBREVIATIONS = {"mono": "monocyte", "nk": "natural killer cell", "dc": "dendritic cell", "pdc": "plasmacytoid dendritic cell",
                 "t": "T cell", "b": "B cell", "mk": "megakaryocyte", "eryth": "erythrocyte"}


LABELS = {"cd14 mono": "classical monocyte", "cd16 mono": "non-classical monocyte", "b": "B cell",
          "cd8 t": "CD8-positive, alpha-beta T cell", "cd4 naive t": "naive thymus-derived CD4-positive, alpha-beta T cell",
          "cd4 memory t": "CD4-positive, alpha-beta memory T cell", "t activated": "activated T cell"}


def ontology_query(name: str) -> str:
    """A cell-type label in Cell Ontology words ("CD14 Mono" -> "classical monocyte", "NK" -> "natural killer cell")."""
    if name.lower() in LABELS:
        return LABELS[name.lower()]
    return " ".join(ABBREVIATIONS.get(w.lower(), w) for w in name.replace("_", " ").split())


class Caption(BaseModel):
    group: str
    n_cells: int
    text: str
    markers: list[str]
    predicted_type: str | None = None
    predicted_fraction: float | None = None
    ontology: str | None = Field(None, description="the Cell Ontology record used, with its id")
    interactions: list[str] = []
    method: str = METHOD


def _markers(adata, groupby: str, n_genes: int) -> dict[str, list[str]]:
    import scanpy as sc

    work = sc.AnnData(adata.X, obs=adata.obs[[groupby]].astype(str).astype("category"), var=adata.var[[]])
    sizes = work.obs[groupby].value_counts()
    work = work[work.obs[groupby].isin(sizes[sizes >= 3].index)].copy()
    work.obs[groupby] = work.obs[groupby].cat.remove_unused_categories()
    sc.pp.filter_genes(work, min_cells=max(3, work.n_obs // 100))
    sc.tl.rank_genes_groups(work, groupby, method="t-test", n_genes=n_genes)
    df = sc.get.rank_genes_groups_df(work, None)
    return {str(g): sub.names.astype(str).head(n_genes).tolist() for g, sub in df.groupby("group", observed=True)}


def caption_groups(adata, groupby: str, kb=None, n_genes: int = 5, groups: list[str] | None = None) -> list[Caption]:
    """One caption per group of ``obs[groupby]`` (or the listed ``groups``)."""
    markers = _markers(adata, groupby, n_genes)
    labels = adata.obs[groupby].astype(str)
    predicted = adata.obs["c2s_cell_type"].astype(str) if "c2s_cell_type" in adata.obs else None
    out = []
    for g, genes in markers.items():
        if groups and g not in groups:
            continue
        m = (labels == g).to_numpy()
        parts = [f"{g} ({int(m.sum())} cells) is marked by {', '.join(genes)}"]
        cap = Caption(group=g, n_cells=int(m.sum()), text="", markers=genes)
        name = g
        if predicted is not None:
            counts = predicted[m].value_counts(normalize=True)
            cap.predicted_type, cap.predicted_fraction = str(counts.index[0]), round(float(counts.iloc[0]), 3)
            parts.append(f"the C2S model calls {cap.predicted_fraction:.0%} of its cells {cap.predicted_type}")
            name = cap.predicted_type
        if kb is not None:
            q = ontology_query(name)
            onto = kb.search(query=q, kinds=["cell_type"], sources=["Cell Ontology"], top_k=25)
            exact = [h for h in onto if h.text.lower().startswith(f"cell type {q.lower()} cl:")]
            onto = exact or onto[:1]
            if onto:
                cap.ontology = f"{onto[0].text} ({onto[0].id})"
                parts.append(f"Cell Ontology: {onto[0].text}")
            lr = kb.search(genes=genes, kinds=["ligand_receptor"], top_k=3, semantic=False)
            cap.interactions = [h.text for h in lr]
            if lr:
                parts.append("its markers take part in " + "; ".join(h.text.split(";")[0] for h in lr))
        cap.text = ". ".join([parts[0]] + [p[0].upper() + p[1:] for p in parts[1:]]).rstrip(".") + "."
        out.append(cap)
    return out
