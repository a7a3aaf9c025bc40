"""Matching question clauses to tools: MiniLM similarity between a clause and each installed tool's description
and example questions, plus IDF-weighted word overlap; the bundled embeddings of the built-in tools' texts; and
splitting a question into clauses.

It knows no tool by name: whatever tools are registered are matched by what they say about themselves.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..embedder import embedder
from ..mentions import find_mentions

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView

#: Weight of word overlap (IDF-weighted stems) added to the embedding similarity.
LEXICAL_WEIGHT = 0.20
STOP = frozenset(
    "the a an of to in on for and or with by from is are be do does did what which how who why when "
    "where this that these those each every me my i you it its can could would should will please "
    "give show tell find make get run cells cell data dataset genes gene about up down go there much some any "
    "like than then also into over between among across per versus vs all their them they there have has use using out off aside first second separately again finally".split()
)


_TEXT_CACHE: dict[str, np.ndarray] = {}  # sha1 of a tool text -> its embedding
#: Embeddings of the built-in tools' descriptions and examples, shipped so that a first run embeds nothing
#: but the question. Rebuilt with ``python -m c2s_agent.agent.planners.embedded``; a test checks it is current.
BUNDLED_FILE = "planner_embeddings.npz"


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:24]


@functools.cache
def _bundled() -> dict[str, np.ndarray]:
    from ...resources import bundled

    path = bundled("prompts") / BUNDLED_FILE
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def builtin_tool_texts() -> list[str]:
    """Every description and example of the tools the built-in plugins register."""
    from ... import registry
    from ...config import Settings

    tools = registry.tools(Settings())
    return sorted(
        {
            t
            for tool in tools.values()
            if (tool.plugin or "").startswith("c2s_builtins")
            for t in (tool.description, *tool.examples)
        }
    )


def write_bundled(path: Path) -> int:
    """Embed the built-in tools' texts and write them to ``path`` (an .npz keyed by text hash)."""
    texts = builtin_tool_texts()
    vecs = embedder().encode(texts)
    np.savez(path, **{_text_key(t): v for t, v in zip(texts, vecs)})
    return len(texts)


def stems(text: str) -> set[str]:
    """Content word stems of a text, plurals as singulars (gene symbols and numbers are entities, not words)."""
    return {
        (w[:-1] if w.endswith("s") and not w.endswith("ss") else w)[:6]
        for w in re.findall(r"[a-z][a-z0-9]+", text.lower())
        if w not in STOP and len(w) >= 3 and not any(ch.isdigit() for ch in w)
    }  # gene symbols are entities


_VERBS = (
    r"how|what|which|who|where|when|why|is|are|do|does|can|could|show|find|plot|compute|make|give|list|"
    r"tell|convert|fit|turn|describe|summari[sz]e|score|predict|annotate|label|generate|embed|rank|compare|"
    r"measure|estimate|identify|reconstruct|retrieve|look|check|assign|run|evaluate|simulate|screen|get|report|"
    r"write|propose|plot"
)
SPLIT = re.compile(
    r"\s*(?:[;?!]+|(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)(?<!\bapprox)(?<!\bca)\.\s+|\(\d{1,2}\)|(?<![\w.])(?<!max )(?<!min )(?<!top )(?<!up to )\d{1,2}\)|"
    r",?\s*\b(?:and then|then|after that|afterwards|followed by|and also|as well as|plus|and separately)\b|"
    r",?\s+and\s+(?=(?:" + _VERBS + r")\b)|,\s+(?=(?:" + _VERBS + r")\b))\s*",
    re.I,
)


#: A clause that only sets the scene ("In the stimulated sample, ...", "According to the model, ...").
CONTEXT_LEAD = re.compile(
    r"^(?:in|within|among|for|across|according to|looking(?: only)? at|using|based on|considering|focusing on|"
    r"restricted to|only in|limited to|pool(?:ing)?|tak(?:e|ing)|keep(?:ing)? only|subset(?:ting)?(?: to)?|"
    r"focus(?:ing)? on|restrict(?:ing)?(?: \w+){0,2} to|only|just|if|suppos(?:e|ing)|assuming|given|imagine|per|"
    r"by|for (?:each|every))\b",
    re.I,
)
VERB_WORD = re.compile(r"\b(?:" + _VERBS + r")\b", re.I)


def split_clauses(question: str) -> list[str]:
    """Split a question with several intents into clauses ("... and then ...", "...; ...", "..., and how ...");
    a clause that only sets the scene is kept with the one after it."""
    parts = [p.strip(" ,.") for p in SPLIT.split(question) if p and p.strip(" ,.")]
    merged: list[str] = []
    for p in parts:
        if merged and CONTEXT_LEAD.match(merged[-1]) and not VERB_WORD.search(merged[-1]):
            merged[-1] = f"{merged[-1]}, {p}"
        else:
            merged.append(p)
    parts = merged
    parts = [p for p in parts if len(p.split()) >= 2 or len(parts) == 1]
    return parts or [question.strip()]


#: Abbreviations a user may write, spelled out for matching.
ABBREVIATIONS = {
    r"\bDEGs?\b": "differentially expressed genes",
    r"\bDE\b": "differential expression",
    r"\bPPIs?\b": "protein-protein interactions",
    r"\bL-?R\b": "ligand-receptor",
}


def _scene(clause: str) -> tuple[str, str, str]:
    """``clause.partition(", ")`` at the first comma outside brackets ("Pool the T cells (naive, memory), ...")."""
    depth = 0
    for i, ch in enumerate(clause):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if depth <= 0 and clause.startswith(", ", i):
            return clause[:i], ", ", clause[i + 2 :]
    return clause, "", ""


def intent(clause: str) -> str:
    """What a clause asks, without the scene it sets ("In the stimulated sample, which ..." -> "which ..."),
    abbreviations spelled out ("DE" -> "differential expression")."""
    head, sep, rest = _scene(clause)
    out = rest if sep and CONTEXT_LEAD.match(head) and not VERB_WORD.search(head) else clause
    for pattern, words in ABBREVIATIONS.items():
        out = re.sub(pattern, words, out)
    return out


def mask_entities(clause: str, view: DatasetView | None) -> str:
    """The clause with dataset labels (and cell types it lacks) replaced by a placeholder ("CD14 Mono and B cells"
    -> "X cells", "cluster 3" -> "cluster X", "stimulated" -> "X") and gene symbols by "gene", so that tools match
    on what is asked, not on which labels their examples use."""
    if view is None:
        return clause
    cell_columns = {view.roles.cell_type, view.roles.predicted, view.roles.cluster} - {None}
    out, last, after_group = [], 0, None
    for m in find_mentions(clause, view):
        if (
            m.start < last
            or m.kind not in ("value", "gene", "missing", "column")
            or (m.kind == "column" and view.roles_named(clause[m.start : m.end]))
        ):
            continue  # a column named by a role word ("cell types", "clusters") says what is asked: kept
        group = m.kind in ("value", "missing")
        if (
            group
            and after_group == m.column
            and re.fullmatch(r"\s*(?:,|&|and|or|, and|, or)?\s*", clause[last : m.start])
        ):
            last = m.end  # "CD14 Mono and B cells" (labels of one column): one placeholder
            continue
        cell = re.search(r"\s+cells?$", clause[m.start : m.end], re.I)
        word = {"gene": "gene", "column": "group"}.get(m.kind, "X")
        if cell:
            word += cell.group()
        elif (
            group
            and (m.kind == "missing" or m.column in cell_columns)
            and not m.qualified
            and not re.match(r"\s*cells?\b", clause[m.end :], re.I)
        ):
            word += " cells"
        out += [clause[last : m.start], word]
        last, after_group = m.end, (m.column if group else None)
    return "".join(out) + clause[last:]


class ToolMatcher:
    """Scores clauses against tools; text embeddings are cached in memory and under ``cache_dir``."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir
        self._tool_cache: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}

    def _tool_vectors(self, tools: dict[str, Tool]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Tool names, the owner index of each text, and the embeddings of every description and example."""
        names, owners, texts = [], [], []
        for i, (name, tool) in enumerate(sorted(tools.items())):
            names.append(name)
            for text in [tool.description, *tool.examples]:
                owners.append(i)
                texts.append(text)
        key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()
        if key not in self._tool_cache:
            vecs = self._cached_encode(key, texts)
            self._tool_cache[key] = (names, np.array(owners), vecs)
        return self._tool_cache[key]

    def _cached_encode(self, key: str, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts``, each cached in memory and on disk, so a new plugin costs only its texts."""
        folder = self.cache_dir / "planner" / "minilm" if self.cache_dir is not None else None
        keys = [_text_key(t) for t in texts]
        missing = []
        for k in keys:
            if k in _TEXT_CACHE:
                continue
            if k in _bundled():
                _TEXT_CACHE[k] = _bundled()[k]
                continue
            path = folder / f"{k}.npy" if folder else None
            if path is not None and path.exists():
                try:
                    _TEXT_CACHE[k] = np.load(path)
                    continue
                except (OSError, ValueError):
                    pass
            missing.append(k)
        if missing:
            todo = {k: t for k, t in zip(keys, texts) if k in set(missing)}
            vecs = embedder().encode(list(todo.values()))
            for k, v in zip(todo, vecs):
                _TEXT_CACHE[k] = v
                if folder is not None:
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        tmp = folder / f"{k}.tmp.npy"
                        np.save(tmp, v)
                        tmp.replace(folder / f"{k}.npy")
                    except OSError:
                        pass  # an unwritable cache only costs time
        return np.stack([_TEXT_CACHE[k] for k in keys])

    def scores(self, clauses: list[str], tools: dict[str, Tool]) -> tuple[list[str], np.ndarray]:
        """(tool names, clauses x tools score): the best cosine similarity over each tool's description and
        examples, plus ``LEXICAL_WEIGHT`` times the IDF-weighted share of the clause's word stems the tool's
        texts contain (so that rare, telling words such as "reconstruct" or "differential" count)."""
        names, owners, vecs = self._tool_vectors(tools)
        q = embedder().encode(clauses)
        sim = q @ vecs.T
        out = np.full((len(clauses), len(names)), -1.0, dtype=np.float32)
        for j in range(len(names)):
            out[:, j] = sim[:, owners == j].max(axis=1)
        tool_stems = [stems(" ".join([tools[n].description, *tools[n].examples])) for n in names]
        idf = {w: np.log(1 + len(names) / sum(w in s for s in tool_stems)) for s in tool_stems for w in s}
        for i, clause in enumerate(clauses):
            words = [w for w in stems(clause) if w in idf]
            rarest = np.log(1 + len(names))
            total = sum(idf[w] for w in words) + rarest * (len(stems(clause)) - len(words))  # unknown words: rarest
            total = max(total, 3 * rarest)  # one shared word in a two-word question is weak evidence
            if total:
                out[i] += LEXICAL_WEIGHT * np.array([sum(idf[w] for w in words if w in s) for s in tool_stems]) / total
        return names, out


if __name__ == "__main__":
    from ...resources import bundled

    out = bundled("prompts") / BUNDLED_FILE
    print(f"wrote {write_bundled(out)} tool texts to {out}")
