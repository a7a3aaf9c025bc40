"""Prompt sets: how each task is written for a model.

``embedded`` (the embedded model's word-level prompts) and ``c2s-scale`` (English plain-completion prompts: the
C2S-Scale models' published cell-type prompt and c2s-agent's own templates for the other tasks) are the project's
template files, ``prompts/models/<name>.toml``. ``cell2sentence`` reads the released C2S models' templates from an
installed ``cell2sentence`` distribution at run time (they are CC BY-NC-ND, so they are never copied into this
project); it fails with a clear InputError when the package is not installed.
"""

from __future__ import annotations

import json
import random
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache

from ..conventions.slots import CELL_TYPE
from ..errors import InputError
from ..resources import bundled

TASKS = (
    CELL_TYPE,
    "generation",
    "generation_unconditional",
    "perturbation",
    "perturbation_context",
    "multicell",
    "multicell_tissue",
    "multicell_tissue_generation",
    "multicell_abstract",
)


@dataclass(frozen=True)
class PromptSet:
    """Templates per task: ``prompts[task]`` is a list of prompt templates, ``responses[task]`` the matching
    response templates. Placeholders: {cell}, {num_genes}, {organism}, {label}, {cell_type}, {condition},
    {perturbation}, {context}, {cells}, {num_cells}, {knowledge}, {tissue}, {abstract}."""

    name: str
    organism: str
    prompts: dict[str, list[str]]
    responses: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def template(self, task: str, index: int | None = 0, seed: int | None = None) -> tuple[str, str]:
        if task not in self.prompts:
            raise InputError(
                f"prompt set {self.name!r}",
                f"has no template for task {task!r}",
                f"use a task it has: {sorted(self.prompts)}",
            )
        options = self.prompts[task]
        i = random.Random(seed).randrange(len(options)) if index is None else index % len(options)
        responses = self.responses.get(task) or ["{cell}"]
        return options[i], responses[i % len(responses)]

    def format(self, task: str, index: int | None = 0, **values) -> str:
        """The prompt for ``task`` filled with ``values`` (missing placeholders are an InputError)."""
        prompt, _ = self.template(task, index)
        values.setdefault("organism", self.organism)
        try:
            return prompt.format(**values)
        except KeyError as exc:
            raise InputError(
                f"{self.name} prompt for {task}", f"needs a value for {exc}", "pass it to the task"
            ) from None

    def response(self, task: str, index: int = 0, **values) -> str:
        _, response = self.template(task, index)
        return response.format(**values)


@lru_cache(maxsize=None)
def from_file(name: str) -> PromptSet:
    """One of the project's own prompt sets, ``prompts/models/<name>.toml``."""
    data = tomllib.loads((bundled("prompts") / "models" / f"{name}.toml").read_text())
    prompts = {t: [data[t]["prompt"]] for t in TASKS if t in data}
    responses = {t: [data[t]["response"]] for t in TASKS if t in data and "response" in data[t]}
    multicell = data.get("multicell", {})
    extra = {"multicell_knowledge": multicell.get("knowledge", ""), "multicell_cell": multicell.get("cell", CELL_LINE)}
    return PromptSet(name, data["organism"], prompts, responses, extra)


def embedded() -> PromptSet:
    """The project's templates for the embedded model."""
    return from_file("embedded")


CELL_LINE = "Cell {n}: {cell}.\n"  # one cell of a multi-cell prompt, unless a prompt set says otherwise

_C2S_FILES = {  # task -> the package-data file of the cell2sentence distribution holding its templates
    CELL_TYPE: "single_cell_cell_type_prediction_prompts.json",
    "generation": "single_cell_cell_type_conditional_generation_prompts.json",
    "multicell_tissue": "multi_cell_tissue_prediction_prompts.json",
    "multicell_tissue_generation": "multi_cell_tissue_conditional_generation.json",
    "multicell_abstract": "multi_cell_natural_lang_interpretation_prompts.json",
}
#: How the reference writes each cell of a multi-cell prompt: a numbered line, the sentence, a full stop.
C2S_CELL_LINE = "Cell {n}:\n{cell}.\n"


@lru_cache(maxsize=None)
def cell2sentence() -> PromptSet:
    """The released C2S models' templates for every task the installed ``cell2sentence`` distribution defines,
    read from its package data (single-cell cell type prediction and generation; multi-cell tissue prediction,
    tissue-conditioned generation and natural-language abstracts)."""
    import importlib.metadata as md

    try:
        dist = md.distribution("cell2sentence")
    except md.PackageNotFoundError:
        raise InputError(
            "prompt set 'cell2sentence'",
            "needs the cell2sentence package, which is not installed",
            "pip install cell2sentence (its templates are CC BY-NC-ND and are read from your install), "
            "or use the 'c2s-scale' prompt set",
        ) from None
    files = {str(f).rsplit("/", 1)[-1]: f for f in dist.files or [] if str(f).endswith(".json") and "prompts" in str(f)}
    prompts, responses = {}, {}
    for task, name in _C2S_FILES.items():
        if name not in files:
            continue
        data = json.loads(dist.locate_file(files[name]).read_text())
        prompts[task] = [_c2s_placeholders(p) for p in data["model_input"]]
        responses[task] = [_c2s_placeholders(r) for r in data["response"]]
    if not prompts:
        raise InputError(
            "prompt set 'cell2sentence'",
            f"found no prompt files in cell2sentence {dist.version}",
            "install cell2sentence 1.x, whose package data holds prompts/*.json",
        )
    return PromptSet("cell2sentence", "Homo sapiens", prompts, responses, {"multicell_cell": C2S_CELL_LINE})


def _c2s_placeholders(text: str) -> str:
    """Map the reference's placeholders onto this project's names."""
    return (
        text.replace("{cell_sentence}", "{cell}")
        .replace("{cell_type}", "{label}")
        .replace("{cell_type_name}", "{label}")
        .replace("{multi_cell_sentences}", "{cells}")
    )


def reference_indices(prompt_set: PromptSet, task: str, n: int, seed: int = 42) -> list[int]:
    """The template each of ``n`` cells gets when the reference formats a dataset: one seeded uniform draw per
    cell, in order (the reference seeds Python's random module with 42). Formats the same prompts as the
    reference, token for token, where a prompt set has several templates per task."""
    rng = random.Random(seed)
    return [rng.randrange(len(prompt_set.prompts[task])) for _ in range(n)]


NAMES = ("embedded", "c2s-scale", "cell2sentence")


def get(name: str) -> PromptSet:
    """A prompt set by name: "embedded", "c2s-scale" or "cell2sentence"."""
    if name == "cell2sentence":
        return cell2sentence()
    if name in NAMES:
        return from_file(name)
    raise InputError("prompt set", f"{name!r} is not known", f"use one of {list(NAMES)}")
