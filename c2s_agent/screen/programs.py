"""Gene programs (named gene lists) and scoring cells on them.

Programs come from plugins (hook ``register_gene_programs``; the built-ins are short names for bundled MSigDB
sets plus a curated MHC class I core), from any bundled gene set by its full name (e.g.
``HALLMARK_HYPOXIA``), or from a user gene list. Cells are scored in two ways:

- ``"rank"``: for cell sentences (the model's view of a cell). Each program gene at 0-based rank ``r`` of a
  top-``k`` sentence adds ``1 - r/k``, an absent gene adds 0; the score is the mean over the program's genes
  (those in ``universe`` when given), so it lies in [0, 1].
- ``"expression"``: mean log1p(CP10k) of the program's measured genes (an AnnData).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..registry import GeneProgram

METHODS = ("rank", "expression")

#: Curated core of MHC class I antigen presentation: classical and non-classical heavy chains, B2M, the
#: peptide-loading complex, the immunoproteasome subunits and NLRC5, the class I transactivator.
MHC_I_CORE = (
    "HLA-A",
    "HLA-B",
    "HLA-C",
    "HLA-E",
    "HLA-F",
    "B2M",
    "TAP1",
    "TAP2",
    "TAPBP",
    "PSMB8",
    "PSMB9",
    "PSMB10",
    "PSME1",
    "PSME2",
    "ERAP1",
    "ERAP2",
    "CALR",
    "PDIA3",
    "NLRC5",
)

#: Built-in short names -> bundled gene set names (registered by the ``screen_plugin`` built-in plugin).
BUILTIN_SETS = {
    "ifn_alpha": "HALLMARK_INTERFERON_ALPHA_RESPONSE",
    "ifn_gamma": "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "apoptosis": "HALLMARK_APOPTOSIS",
    "inflammatory": "HALLMARK_INFLAMMATORY_RESPONSE",
    "tnfa_nfkb": "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "mhc_i_loading": "REACTOME_ANTIGEN_PRESENTATION_FOLDING_ASSEMBLY_AND_PEPTIDE_LOADING_OF_CLASS_I_MHC",
}


def builtin_programs() -> dict[str, GeneProgram]:
    """The built-in programs: MSigDB Hallmark / Reactome sets by short name and the curated MHC-I core."""
    from ..knowledge.sources import load_gene_sets

    sets = load_gene_sets()
    out = {
        short: GeneProgram(short, tuple(sets[full]), f"{full} ({sets[full].source or sets[full].collection})")
        for short, full in BUILTIN_SETS.items()
        if full in sets
    }
    out["mhc_i"] = GeneProgram(
        "mhc_i",
        MHC_I_CORE,
        "curated MHC class I antigen presentation core (heavy chains, "
        "B2M, TAP/TAPBP loading complex, immunoproteasome, ERAP1/2, CALR, PDIA3, NLRC5)",
    )
    return out


def programs(settings=None) -> dict[str, GeneProgram]:
    """Every registered program by name (built-ins first, then plugins)."""
    from .. import registry

    out = {}
    for name, reg in registry.gene_programs(settings).items():
        out[name] = GeneProgram(
            name, tuple(dict.fromkeys(str(g).upper() for g in reg.genes)), reg.source or reg.plugin, reg.plugin
        )
    return out


def get_program(program, settings=None) -> GeneProgram:
    """A :class:`GeneProgram` from a registered name, a bundled gene set name, a list of genes, or a
    comma-separated gene string ("ISG15,MX1,IFIT1")."""
    if isinstance(program, GeneProgram):
        return program
    if isinstance(program, str) and "," in program:
        program = [g.strip() for g in program.split(",") if g.strip()]
    if isinstance(program, Sequence) and not isinstance(program, str):
        genes = tuple(dict.fromkeys(str(g).strip().upper() for g in program if str(g).strip()))
        if len(genes) < 2:
            raise InputError("program", f"gives {len(genes)} gene(s)", "give at least two gene symbols")
        return GeneProgram("custom", genes, "user gene list")
    if not isinstance(program, str) or not program.strip():
        raise InputError(
            "program",
            f"{program!r} is not a program name or gene list",
            "give a name such as 'mhc_i' or 'ifn_alpha', or a list of genes",
        )
    registered = programs(settings)
    key = program.strip()
    for name, prog in registered.items():
        if name.lower() == key.lower():
            return prog
    from ..knowledge.sources import load_gene_sets

    sets = load_gene_sets()
    full = key.upper().replace(" ", "_")
    if full in sets:
        return GeneProgram(full, tuple(sets[full]), sets[full].source or sets[full].collection)
    raise InputError(
        "program",
        f"{program!r} is not a registered program or bundled gene set",
        f"use one of {sorted(registered)}, a bundled gene set name (e.g. HALLMARK_HYPOXIA), "
        "or a comma-separated gene list",
    )


def _sentence_words(cells) -> list[list[str]]:
    from ..sentences import CellSentences

    if isinstance(cells, CellSentences):
        return [cells.words(i) for i in range(len(cells))]
    if isinstance(cells, str) or not isinstance(cells, Sequence):
        raise InputError(
            "cells", f"is a {type(cells).__name__}", "pass an AnnData, CellSentences or a list of sentences"
        )
    return [s.replace(",", " ").strip().rstrip(".").upper().split() for s in cells]


def rank_scores(sentences, genes: Sequence[str], k: int | None = None) -> np.ndarray:
    """Rank-weighted program score of each sentence (see the module docstring); ``k`` defaults to each
    sentence's length."""
    genes = [str(g).upper() for g in genes]
    if not genes:
        raise InputError("program", "has no genes left to score", "choose a program measured in these cells")
    wanted = set(genes)
    out = np.zeros(len(sentences), np.float64)
    for i, words in enumerate(_sentence_words(sentences)):
        kk = k or len(words)
        if not kk:
            continue
        out[i] = sum(1.0 - r / kk for r, g in enumerate(words[:kk]) if g in wanted)
    return out / len(genes)


def score_cells(cells, program, method: str = "rank", k: int | None = None, universe=None, settings=None):
    """Score cells on a program. Returns ``(scores, genes_used)``.

    ``cells``: an AnnData (expression; for ``"rank"`` its top-``k`` sentences, or ``obs["c2s_sentence"]`` when
    present), CellSentences or sentence strings (``"rank"`` only). ``universe`` restricts the program to genes
    that could appear (e.g. a model's vocabulary); by default the AnnData's genes.
    """
    if method not in METHODS:
        raise InputError("method", f"{method!r} is not a scoring method", f"use one of {list(METHODS)}")
    prog = get_program(program, settings)
    is_adata = hasattr(cells, "obs_names") and hasattr(cells, "X")
    if universe is None and is_adata:
        universe = cells.var_names.astype(str).str.upper()
    genes = prog.restricted(universe)
    if len(genes) < 2:
        raise InputError(
            "program",
            f"{prog.name!r}: only {len(genes)} of its {len(prog.genes)} genes are measured",
            "choose a program whose genes are in the data",
        )
    if method == "expression":
        if not is_adata:
            raise InputError(
                "cells", "are sentences; expression scoring needs an AnnData", "use method='rank' for sentences"
            )
        from ..data import prepare

        data = cells if "c2s_input" in cells.uns else prepare(cells)
        names = data.var_names.astype(str).str.upper()
        cols = [int(np.flatnonzero(names == g)[0]) for g in genes]
        X = data.X[:, cols]
        X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
        return np.asarray(X, np.float64).mean(1), genes
    if is_adata:
        if "c2s_sentence" in cells.obs:
            sentences = cells.obs["c2s_sentence"].astype(str).tolist()
        else:
            from ..sentences import to_sentences

            sentences = to_sentences(cells, top_k=k)
    else:
        sentences = cells
    return rank_scores(sentences, genes, k), genes


#: Words in a question that name a built-in program (first match wins: antigen presentation before interferon).
PROGRAM_WORDS = (
    ("mhc_i", r"antigen.present|\bmhc|\bhla\b|class i\b"),
    ("ifn_gamma", r"interferon.gamma|\bifn.?g"),
    ("ifn_alpha", r"interferon|\bifn|type i\b"),
    ("apoptosis", r"apopto|cell death"),
    ("inflammatory", r"inflamm"),
    ("tnfa_nfkb", r"\btnf|nf.?kb"),
)


#: Words after a program's word that make it the condition of cells ("interferon-stimulated cells"), no program.
TREATED = re.compile(r"[\w-]*[\s-](?:stimulated|treated|exposed)\b")


#: Words after a program's name that say it is meant as a program ("the interferon gamma response").
PROGRAM_NOUN = re.compile(
    r"[\w-]*(?:[\s-]+[\w-]+){0,4}?[\s-]+(?:response|programm?e?s?|signatures?|pathways?|presentation|scores?|activity|"
    r"signall?ing)\b"
)


def program_from_text(text: str | None) -> str | None:
    """The built-in program a question names ("antigen presentation" -> mhc_i, "interferon gamma" -> ifn_gamma):
    the first it names as a program (:func:`programs_named`), else the first by the order of ``PROGRAM_WORDS``,
    not counting the stimulus of a condition ("the apoptosis program in interferon-stimulated cells")."""
    if named := programs_named(text):
        return named[0]
    for name, pattern in PROGRAM_WORDS:
        for m in re.finditer(pattern, (text or "").lower()):
            if not TREATED.match((text or "").lower(), m.end()):
                return name
    return None


def programs_named(text: str | None) -> list[str]:
    """The built-in programs a question names as programs ("the interferon gamma response and the MHC class I
    antigen presentation programs"), in its order; a stimulus or perturbation ("IFN-beta, TNF") is none."""
    low, taken, found = (text or "").lower(), set(), []
    for name, pattern in PROGRAM_WORDS:
        for m in re.finditer(pattern, low):
            span = set(range(m.start(), m.end()))
            if not span & taken and PROGRAM_NOUN.match(low, m.end()) and not TREATED.match(low, m.end()):
                taken |= span
                found.append((m.start(), name))
    return list(dict.fromkeys(name for _, name in sorted(found)))


def perturbations_from_text(text: str | None, known: list[str]) -> list[str]:
    """Perturbations listed after a colon ("...: IFN-beta, TNF and IL4"), else known ones the text names."""
    if text and ":" in text:
        listed = re.split(r",|;|\band\b|\bor\b", text.rsplit(":", 1)[1])
        names = [x.strip(" ?.!'\"") for x in listed]
        if [n for n in names if n]:
            return list(dict.fromkeys(n for n in names if n))
    return [k for k in known if text and k.lower() in text.lower()]
