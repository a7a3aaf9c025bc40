"""The embedded, offline planner: MiniLM similarity between the question's clauses and each installed tool's
description and example questions; entities from the dataset's own vocabulary fill the tool's arguments.

It knows no tool by name: whatever tools are registered are matched by what they say about themselves.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..embedder import embedder
from ..plan import NO_TOOL, Plan, Step
from ..vocabulary import fill_args, is_celltype_column
from .base import Recorder, drop_dependents, finish

if TYPE_CHECKING:
    from ...tools import Tool
    from ..vocabulary import Vocabulary

#: Below this cosine similarity a clause matches no tool ("no installed tool can do this").
THRESHOLD = 0.40
#: A runner-up this close to the best match is preferred when the best one's required arguments are missing.
MARGIN = 0.10
#: Weight of word overlap (IDF-weighted stems) added to the embedding similarity.
LEXICAL_WEIGHT = 0.20
STOP = frozenset("the a an of to in on for and or with by from is are be do does did what which how who why when "
                 "where this that these those each every me my i you it its can could would should will please "
                 "give show tell find make get run cells cell data dataset genes gene about up down go there many much some any "
                 "like than then also into over between versus vs all their them they there have has use using".split())


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
    return sorted({t for tool in tools.values() if (tool.plugin or "").startswith("c2s_builtins")
                   for t in (tool.description, *tool.examples)})


def write_bundled(path: Path) -> int:
    """Embed the built-in tools' texts and write them to ``path`` (an .npz keyed by text hash)."""
    texts = builtin_tool_texts()
    vecs = embedder().encode(texts)
    np.savez(path, **{_text_key(t): v for t, v in zip(texts, vecs)})
    return len(texts)


def model_labels(settings) -> list[str]:
    """The cell types the configured C2S model predicts, from its ``c2s_model.json`` (no weights are loaded);
    [] for a model served by URL or without metadata."""
    from ...errors import C2SError
    from ...models.model import resolve

    try:
        _, target = resolve(None, settings)
    except C2SError:
        return []
    return _labels_in(str(target))


@functools.cache
def _labels_in(target: str) -> list[str]:
    import json

    meta = Path(target) / "c2s_model.json"
    return list(json.loads(meta.read_text()).get("labels", [])) if meta.is_file() else []


def _stems(text: str) -> set[str]:
    return {w[:6] for w in re.findall(r"[a-z][a-z0-9]+", text.lower())
            if w not in STOP and len(w) >= 3 and not any(ch.isdigit() for ch in w)}  # gene symbols are entities

_VERBS = (r"how|what|which|who|where|when|why|is|are|do|does|can|could|show|find|plot|compute|make|give|list|"
          r"tell|convert|fit|turn|describe|summari[sz]e|score|predict|annotate|label|generate|embed|rank|compare|"
          r"measure|estimate|identify|reconstruct|retrieve|look|check|assign|run|evaluate|simulate|screen|get")
SPLIT = re.compile(
    r"\s*(?:[;?!]+|\.\s+|,?\s*\b(?:and then|then|after that|afterwards|followed by|and also|as well as|plus)\b|"
    r",?\s+and\s+(?=(?:" + _VERBS + r")\b)|,\s+(?=(?:" + _VERBS + r")\b))\s*", re.I)


def split_clauses(question: str) -> list[str]:
    """Split a question with several intents into clauses ("... and then ...", "...; ...", "..., and how ...")."""
    parts = [p.strip(" ,.") for p in SPLIT.split(question) if p and p.strip(" ,.")]
    parts = [p for p in parts if len(p.split()) >= 2 or len(parts) == 1]
    return parts or [question.strip()]


def mask_entities(clause: str, vocab: Vocabulary | None) -> str:
    """The clause with dataset labels replaced by a placeholder ("B cells" -> "X cells") and
    gene symbols by "gene", so that tools match on what is asked, not on which labels their examples use."""
    if vocab is None:
        return clause
    out, last = [], 0
    for m in vocab.mentions(clause):
        if m.kind not in ("value", "gene") or m.start < last:
            continue
        word = "gene" if m.kind == "gene" else "X"
        out += [clause[last:m.start], word]
        last = m.end
    return "".join(out) + clause[last:]


class EmbeddedPlanner:
    """Offline planner; ``threshold`` is the least similarity for a clause to match a tool."""

    name = "embedded"

    def __init__(self, settings=None, threshold: float = THRESHOLD):
        self.settings, self.threshold = settings, threshold
        self._tool_cache: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ matching
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
        folder = self.settings.cache_dir / "planner" / "minilm" if self.settings is not None else None
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
        stems = [_stems(" ".join([tools[n].description, *tools[n].examples])) for n in names]
        idf = {w: np.log(1 + len(names) / sum(w in s for s in stems)) for s in stems for w in s}
        for i, clause in enumerate(clauses):
            words = [w for w in _stems(clause) if w in idf]
            rarest = np.log(1 + len(names))
            total = sum(idf[w] for w in words) + rarest * (len(_stems(clause)) - len(words))  # unknown words: rarest
            total = max(total, 3 * rarest)  # one shared word in a two-word question is weak evidence
            if total:
                out[i] += LEXICAL_WEIGHT * np.array([sum(idf[w] for w in words if w in s) for s in stems]) / total
        return names, out

    # ------------------------------------------------------------------ planning
    def plan(self, question: str, tools: dict[str, Tool], vocab: Vocabulary | None,
             record: Recorder | None = None) -> Plan:
        t0 = time.perf_counter()
        clauses = split_clauses(question)
        if not tools:
            return Plan(question=question, planner=self.name, unanswered=clauses, notes=[f"{NO_TOOL}: no tools installed"])
        names, sim = self.scores([mask_entities(c, vocab) for c in clauses], tools)
        steps, unanswered, notes = [], [], []
        view = vocab  # after a step predicts cell types, "monocytes" names the predicted labels
        for clause, row in zip(clauses, sim):
            best = int(row.argmax())
            if row[best] < self.threshold:
                if steps and self._refine(steps[-1], clause, tools, vocab):
                    continue  # "..., give me 15": details for the previous step, not a new question
                unanswered.append(clause)
                continue
            tool, args, arg_notes, score = self._choose(clause, row, names, tools, view, question)
            notes.extend(arg_notes)
            last = steps[-1] if steps else None
            if last is not None and last.tool == tool.name and all(last.args.get(k, v) == v for k, v in args.items()):
                last.args.update(args)  # a refinement of the previous step ("..., show the top 8")
                last.why += f"; {clause}"
                continue
            step = Step(id="", tool=tool.name, args=args, why=clause, score=round(score, 3))
            if not any(s.tool == step.tool and s.args == step.args for s in steps):
                steps.append(step)
                view = self._predicted_view(step, tools[step.tool], vocab) or view
        if unanswered:
            notes.append(f"{NO_TOOL}: " + "; ".join(f'"{c}"' for c in unanswered))
        plan = finish(Plan(question=question, steps=steps, planner=self.name, unanswered=unanswered, notes=notes),
                      tools, vocab)
        if record is not None:
            record("planner", name=f"{self.name}:minilm", duration_s=time.perf_counter() - t0,
                   arguments={"question": question, "clauses": clauses}, output_bytes=len(plan.model_dump_json()))
        return plan

    def _predicted_view(self, step: Step, tool: Tool, vocab: Vocabulary | None) -> Vocabulary | None:
        """The vocabulary after ``step`` when it predicts a cell-type column the data lacks (its ``labels``
        argument, else the model's labels, become that column's values); None otherwise."""
        if vocab is None:
            return None
        for slot in tool.slots("produces", step.args):
            kind, _, col = slot.partition(":")
            if kind == "obs" and col not in vocab.columns and is_celltype_column(col):
                labels = step.args.get("labels") or model_labels(self.settings)
                if labels:
                    return vocab.predicted(col, list(labels))
        return None

    @staticmethod
    def _refine(step: Step, clause: str, tools, vocab) -> bool:
        """Add the entities of a clause that matches no tool to the previous step, if that step can take them
        without changing what it already has."""
        if len(_stems(mask_entities(clause, vocab))) > 1:
            return False  # it asks for something of its own, not just more detail
        args, _ = fill_args(tools[step.tool], clause, vocab)
        new = {k: v for k, v in args.items() if k not in step.args}
        if not new or any(step.args.get(k, v) != v for k, v in args.items()):
            return False
        try:
            tools[step.tool].input_model.model_validate({**step.args, **new})
        except Exception:  # noqa: BLE001 - the entities do not fit this tool
            return False
        step.args.update(new)
        step.why += f"; {clause}"
        return True

    def _choose(self, clause, row, names, tools, vocab, question):
        """The best tool whose arguments the question can fill; a close runner-up wins over a best match
        whose required arguments the question does not give."""
        order = [int(i) for i in np.argsort(-row) if row[i] >= max(self.threshold, row.max() - MARGIN)]
        first = None
        for i in order:
            tool = tools[names[i]]
            args, notes = fill_args(tool, clause, vocab, question)
            first = first or (tool, args, notes, float(row[i]))
            try:
                tool.input_model.model_validate(args)
            except Exception:  # noqa: BLE001 - a required argument is missing: try the next tool
                continue
            return tool, args, notes, float(row[i])
        return first

    def replan(self, plan: Plan, failed: Step, error: str, tools: dict[str, Tool], vocab: Vocabulary | None,
               record: Recorder | None = None, done_slots: set[str] | None = None) -> list[Step]:
        """Try the next-best tool for the failed step's clause; else drop the steps that depended on it."""
        idx = next(i for i, s in enumerate(plan.steps) if s.id == failed.id)
        remaining = plan.steps[idx + 1:]
        tried = {failed.tool} | {s.tool for s in plan.steps[:idx] if s.why == failed.why}
        others = {n: t for n, t in tools.items() if n not in tried}
        replacement: list[Step] = []
        if others and not failed.why.startswith("needed by"):
            names, sim = self.scores([failed.why], others)
            best = int(sim[0].argmax())
            if sim[0, best] >= self.threshold:
                tool = others[names[best]]
                args, _ = fill_args(tool, failed.why, vocab, plan.question)
                replacement = [Step(id=f"{failed.id}r", tool=tool.name, args=args, why=failed.why,
                                    score=round(float(sim[0, best]), 3))]
        if not replacement:
            remaining, _ = drop_dependents(remaining, failed, tools, vocab, done_slots or set())
        return replacement + remaining


if __name__ == "__main__":
    from ...resources import bundled

    out = bundled("prompts") / BUNDLED_FILE
    print(f"wrote {write_bundled(out)} tool texts to {out}")
