"""Interaction knowledge: CellPhoneDB ligand-receptor pairs, BioGRID and IntAct protein interactions,
MSigDB gene sets and Cell Ontology terms as typed records, rendered as short sentences, indexed for exact and
semantic retrieval, injected into prompts, and used to score ligand-receptor signalling between cell groups.

Heavy libraries (torch, faiss, sentence-transformers) load only when an index is built, loaded or queried.
"""

from __future__ import annotations

from .records import CellType, GeneSet, GeneSummary, LigandReceptor, ProteinInteraction, Record
from .sources import load_gene_sets

__all__ = [
    "CellType",
    "GeneSet",
    "GeneSummary",
    "LigandReceptor",
    "ProteinInteraction",
    "Record",
    "build",
    "load",
    "load_gene_sets",
    "render_context",
    "render_group_context",
    "score_ligand_receptor",
    "search",
]


def build(settings=None, **kwargs):
    """Build the knowledge index (see :func:`c2s_agent.knowledge.index.build`)."""
    from ..config import Settings
    from .index import build as _build

    return _build(settings or Settings(), **kwargs)


def load(settings=None, **kwargs):
    """The knowledge base, built on first use (see :func:`c2s_agent.knowledge.index.load`)."""
    from ..config import Settings
    from .index import load as _load

    return _load(settings or Settings(), **kwargs)


def search(query: str | None = None, genes: list[str] | None = None, top_k: int = 10, settings=None, **kwargs):
    """Hybrid exact + semantic retrieval; returns :class:`~c2s_agent.knowledge.retrieve.Hit` objects."""
    return load(settings).search(query=query, genes=genes, top_k=top_k, **kwargs)


def render_context(genes: list[str], budget_tokens: int = 256, settings=None) -> str:
    """Interactions among and around ``genes`` as a fenced reference-data block within ``budget_tokens``."""
    from .context import render_context as _render

    return _render(genes, budget_tokens=budget_tokens, settings=settings)


def render_group_context(groups: dict[str, list[str]], budget_tokens: int = 256, settings=None) -> str:
    """Ligand-receptor pairs linking cell groups (name -> genes) as a fenced reference-data block."""
    from .context import render_group_context as _render

    return _render(groups, budget_tokens=budget_tokens, settings=settings)


def score_ligand_receptor(adata, groupby: str, source, target, **kwargs):
    """Score CellPhoneDB pairs between two cell groups (see :func:`c2s_agent.knowledge.lr.score_ligand_receptor`)."""
    from .lr import score_ligand_receptor as _score

    return _score(adata, groupby, source, target, **kwargs)
