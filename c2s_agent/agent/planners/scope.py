"""Analyses a single-cell user often asks for that the built-in tools do not offer (trajectories, RNA velocity,
clonotypes, copy number, deconvolution ...). A sentence of a question asking for one is not planned, and the plan
says so, unless an installed tool's description or examples name the same analysis (a plugin may add it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...tools import Tool

#: Analysis -> the words that ask for it.
ANALYSES = {
    "trajectory inference (pseudotime)": r"pseudo-?times?|trajector(?:y|ies)|lineage (?:tracing|inference)|fate mapping",
    "RNA velocity": r"\bRNA velocity|\bvelocity\b|scvelo|velocyto",
    "immune repertoire (TCR/BCR clonotypes)": r"clonotypes?|\b(?:TCR|BCR)s?\b|V\(D\)J|\bVDJ\b|clonal expansion",
    "copy-number inference": r"copy[- ]number|\bCNVs?\b|infer-?cnv|aneuploid\w*",
    "spatial deconvolution or mapping": r"deconvol\w*|cell2location|novosparc|\bRCTD\b|tangram",
    "spatially variable genes": r"spatially variable|moran'?s\s+i\b|spatial autocorrelation|spatialde",
    "doublet detection": r"(?:detect|find|remove|flag)\w*\s+(?:the\s+)?doublets|doublet detection|scrublet|doubletfinder",
    "batch integration": r"batch[- ]correct\w*|\bharmony\b|\bscvi\b|\bbbknn\b|\bcombat\b|integrat\w+ (?:the )?(?:batches|datasets|samples)",
    "gene regulatory networks": r"regulons?|\bscenic\b|gene regulatory networks?|\bGRNs?\b",
    "splicing or isoforms": r"splic(?:ing|e variants?)|isoforms?",
    "chromatin accessibility": r"\bATAC\b|chromatin accessibility|peak calling",
    "imputation": r"\bimput(?:e|ation)\b",
    "training or fine-tuning a model": r"fine-?tun\w*|\bre-?train\w*|\btrain (?:the|a|my|your) (?:[\w-]+ )?model",
}
_PATTERNS = {name: re.compile(rx, re.I) for name, rx in ANALYSES.items()}
SENTENCE = re.compile(r"(?<=[.?!;])\s+")


def offered(pattern: re.Pattern, tools: dict[str, Tool]) -> bool:
    return any(pattern.search(text) for t in tools.values() for text in (t.description, *t.examples))


def unoffered(sentence: str, tools: dict[str, Tool]) -> str | None:
    """The analysis ``sentence`` asks for that no installed tool offers, else None."""
    for name, pattern in _PATTERNS.items():
        if pattern.search(sentence) and not offered(pattern, tools):
            return name
    return None


def split_unoffered(question: str, tools: dict[str, Tool]) -> tuple[str, list[tuple[str, str]]]:
    """(the question without its sentences that ask for an analysis no tool offers, [(sentence, analysis)])."""
    kept, refused = [], []
    for sentence in SENTENCE.split(question.strip()):
        name = unoffered(sentence, tools)
        (refused.append((sentence, name)) if name else kept.append(sentence))
    return " ".join(kept), refused
