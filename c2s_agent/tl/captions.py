"""Captions for cell groups, composed from evidence: marker genes, C2S-predicted types (when annotation ran),
the Cell Ontology term the group's label names, and curated interactions of the markers. No generative language
model writes them; each caption says so and names its parts, so every phrase can be checked against its source."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..conventions import lookup
from ..conventions.slots import MARKERS, PREDICTED_TYPE
from .markers import marker_genes

METHOD = (
    "composed by a template from marker genes (Wilcoxon test), C2S-predicted types, Cell Ontology terms and "
    "CellPhoneDB/BioGRID/IntAct records; no language model generated the text"
)


class Caption(BaseModel):
    group: str
    n_cells: int
    text: str
    markers: list[str]
    predicted_type: str | None = None
    predicted_fraction: float | None = None
    ontology: str | None = Field(None, description="the Cell Ontology term the label names, with its id")
    interactions: list[str] = []
    method: str = METHOD


def caption_groups(adata, groupby: str, kb=None, n_genes: int = 5, groups: list[str] | None = None) -> list[Caption]:
    """One caption per group of ``obs[groupby]`` (or the listed ``groups``); ``kb`` (a loaded knowledge base)
    adds the markers' curated interactions."""
    table = marker_genes(adata, groupby, groups, n_genes=n_genes)
    labels = adata.obs[groupby].astype(str)
    predicted = adata.obs[PREDICTED_TYPE].astype(str) if PREDICTED_TYPE in adata.obs else None
    out = []
    for g in adata.uns[MARKERS]["groups"]:
        genes = table.loc[table.group == g, "gene"].tolist()
        m = (labels == g).to_numpy()
        parts = [f"{g} ({int(m.sum())} cells) is marked by {', '.join(genes) or 'no gene passing the marker rule'}"]
        cap = Caption(group=g, n_cells=int(m.sum()), text="", markers=genes)
        name = g
        if predicted is not None:
            counts = predicted[m].value_counts(normalize=True)
            cap.predicted_type, cap.predicted_fraction = str(counts.index[0]), round(float(counts.iloc[0]), 3)
            parts.append(f"the C2S model calls {cap.predicted_fraction:.0%} of its cells {cap.predicted_type}")
            name = cap.predicted_type
        term = lookup(name)
        if term is not None:
            cap.ontology = f"{term.name} ({term.id}): {term.definition}".rstrip(": ")
            parts.append(
                f"Cell Ontology: {term.name} ({term.id})" + (f", {term.definition}" if term.definition else "")
            )
        if kb is not None and genes:
            lr = kb.search(genes=genes, kinds=["ligand_receptor"], top_k=3, semantic=False)
            cap.interactions = [h.text for h in lr]
            if lr:
                parts.append("its markers take part in " + "; ".join(h.text.split(";")[0] for h in lr))
        cap.text = ". ".join([parts[0]] + [p[0].upper() + p[1:] for p in parts[1:]]).rstrip(".") + "."
        out.append(cap)
    return out
