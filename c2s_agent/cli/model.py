"""``c2s annotate``, ``generate``, ``embed``, ``perturb``, ``serve`` and ``train``: C2S models on AnnData files.

Every command works without ``--model`` (the embedded model); ``--model`` also takes a local Hugging Face
directory or the URL of an OpenAI-compatible server.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..conventions.slots import CELL_TYPE, CONDITION
from ._app import app, console

MODEL_HELP = "'embedded' (default), a local HF model directory, or a server URL (http://127.0.0.1:8000)"
BACKED = typer.Option(
    False,
    "--backed",
    help="stream IN from disk in chunks: bounded memory, resumable after a kill "
    "(re-run the same command), progress with ETA",
)
CHUNK = typer.Option(10_000, "--chunk-size", help="cells per chunk with --backed")
EXECUTOR = typer.Option("local", help="with --backed: 'local', or 'ray' to spread chunks over a Ray cluster's workers")
ADDRESS = typer.Option(None, help="with --executor ray: the cluster's address (default: a local Ray)")
NUM_CPUS = typer.Option(None, help="with --executor ray and no --address: CPUs of the local Ray")


def _settings(model: str | None, threads: int | None = None):
    from ..config import Settings

    s = Settings()
    updates = {}
    if model:
        updates["model"] = model
    if threads is not None:
        updates["threads"] = threads
    return s.model_copy(update=updates) if updates else s


def _out_path(out: Path) -> Path:
    from ..errors import InputError

    if out.suffix != ".h5ad":
        raise InputError(out, "does not end in .h5ad", "name the output file something.h5ad")
    if not out.parent.exists():
        raise InputError(out, "is in a folder that does not exist", f"create {out.parent} first")
    return out


def _load(model: str | None, threads: int | None):
    from ..models import load_model

    settings = _settings(model, threads)
    with console.status(f"loading model {settings.model} ..."):
        return load_model(settings.model, settings)


def _stream(
    task: str, inp: str, out: Path, model, threads, chunk_size: int, executor: str, address, num_cpus, **options
):
    """Run a model task over IN streamed from disk (c2s_agent.models.stream) and report it."""
    from ..models.stream import stream

    settings = _settings(model, threads)
    res = stream(
        task,
        inp,
        _out_path(out),
        settings.model,
        settings,
        chunk_size,
        executor=executor,
        threads=threads,
        address=address,
        num_cpus=num_cpus,
        **options,
    )
    console.print(
        f"[green]Wrote[/] {out}: {res.n_cells:,} cells in {res.n_chunks} chunks ({res.n_resumed} resumed, "
        f"{res.n_run} run at {res.cells_per_s:,.1f} cells/s)"
    )
    return res


@app.command("annotate")
def annotate(
    inp: str = typer.Argument(..., metavar="IN.h5ad", help="input .h5ad (or 'demo')"),
    out: Path = typer.Argument(..., metavar="OUT.h5ad"),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    mode: str = typer.Option("score", help="'score' candidate labels by likelihood, or 'generate'"),
    labels: str | None = typer.Option(None, help="comma-separated candidate labels (default: all known)"),
    threshold: float | None = typer.Option(None, help="confidence below which a cell is 'unknown'"),
    threads: int | None = typer.Option(None, help="torch threads (default: one per core)"),
    backed: bool = BACKED,
    chunk_size: int = CHUNK,
    executor: str = EXECUTOR,
    address: str | None = ADDRESS,
    num_cpus: int | None = NUM_CPUS,
) -> None:
    """Predict cell types: writes obs['c2s_cell_type'] and obs['c2s_confidence']."""
    from ..data import read, write
    from ..models import tl

    out = _out_path(out)
    if backed:
        res = _stream(
            "annotate",
            inp,
            out,
            model,
            threads,
            chunk_size,
            executor,
            address,
            num_cpus,
            mode=mode,
            threshold=threshold,
            labels=[x.strip() for x in labels.split(",")] if labels else None,
        )
        counts = res.summary["counts"]
        console.print(
            "  "
            + ", ".join(f"{k} {v}" for k, v in list(counts.items())[:8])
            + f"; mean confidence {res.summary['mean_confidence']:.2f}"
        )
        return
    adata = read(inp)
    m = _load(model, threads)
    with console.status(f"annotating {adata.n_obs:,} cells ..."):
        df = tl.annotate(
            adata, m, mode=mode, threshold=threshold, labels=[x.strip() for x in labels.split(",")] if labels else None
        )
    write(adata, out)
    counts = df["label"].value_counts()
    console.print(
        f"[green]Wrote[/] {out}: {adata.n_obs:,} cells; "
        + ", ".join(f"{k} {v}" for k, v in counts.head(8).items())
        + f"; mean confidence {df['confidence'].mean():.2f}"
    )


@app.command("embed")
def embed(
    inp: str = typer.Argument(..., metavar="IN.h5ad"),
    out: Path = typer.Argument(..., metavar="OUT.h5ad"),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    threads: int | None = typer.Option(None, help="torch threads"),
    backed: bool = BACKED,
    chunk_size: int = CHUNK,
    executor: str = EXECUTOR,
    address: str | None = ADDRESS,
    num_cpus: int | None = NUM_CPUS,
) -> None:
    """Cell embeddings into obsm['X_c2s']."""
    from ..data import read, write
    from ..models import tl

    out = _out_path(out)
    if backed:
        _stream("embed", inp, out, model, threads, chunk_size, executor, address, num_cpus)
        return
    adata = read(inp)
    m = _load(model, threads)
    with console.status(f"embedding {adata.n_obs:,} cells ..."):
        X = tl.embed(adata, m)
    write(adata, out)
    console.print(f"[green]Wrote[/] {out}: obsm['X_c2s'] {X.shape[0]:,} x {X.shape[1]}")


@app.command("generate")
def generate(
    out: Path = typer.Argument(..., metavar="OUT.h5ad"),
    cell_type: str = typer.Option(..., "--cell-type", help="cell type to generate, e.g. 'CD14 Mono'"),
    n: int = typer.Option(50, "--n", help="number of cells"),
    condition: str | None = typer.Option(None, help="condition, e.g. ctrl or stim"),
    seed: int = typer.Option(0),
    guidance: float | None = typer.Option(
        None,
        help="classifier-free guidance weight towards the cell type (default: the model's own; 0 samples unguided)",
    ),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    genes_from: str | None = typer.Option(
        None, help="an .h5ad whose genes are the vocabulary (for a model without one, e.g. a pretrained LLM)"
    ),
    threads: int | None = typer.Option(None, help="torch threads"),
) -> None:
    """Generate cells of a type: sentences in obs['c2s_sentence'], expression reconstructed from rank in X."""
    from ..data import write
    from ..models import tl

    out = _out_path(out)
    m = _load(model, threads)
    genes = None
    if genes_from:
        from ..data import read
        from ..sentences.transform import gene_vocabulary

        names, usable = gene_vocabulary(read(genes_from, backed=True).var_names)
        genes = [str(g) for g in names[usable]]
    with console.status(f"generating {n} {cell_type} cells ..."):
        gen = tl.generate_cells(cell_type, n, condition=condition, model=m, seed=seed, guidance=guidance, genes=genes)
    write(gen, out)
    console.print(
        f"[green]Wrote[/] {out}: {gen.n_obs} cells, {gen.obs['c2s_n_genes'].mean():.0f} genes each; "
        f"example: {gen.obs['c2s_sentence'].iloc[0][:120]} ..."
    )


@app.command("perturb")
def perturb(
    inp: str = typer.Argument(..., metavar="IN.h5ad"),
    out: Path = typer.Argument(..., metavar="OUT.h5ad"),
    perturbation: str = typer.Option("IFN-beta", help="perturbation name known to the model"),
    context: str | None = typer.Option(None, help="context text (models trained with contexts only)"),
    seed: int = typer.Option(0),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    threads: int | None = typer.Option(None, help="torch threads"),
    backed: bool = BACKED,
    chunk_size: int = CHUNK,
    executor: str = EXECUTOR,
    address: str | None = ADDRESS,
    num_cpus: int | None = NUM_CPUS,
) -> None:
    """Predict each cell's perturbed state: one output cell per input cell."""
    from ..data import read, write
    from ..models import tl

    out = _out_path(out)
    if backed:
        _stream(
            "perturb",
            inp,
            out,
            model,
            threads,
            chunk_size,
            executor,
            address,
            num_cpus,
            perturbation=perturbation,
            context=context,
            seed=seed,
        )
        return
    adata = read(inp)
    m = _load(model, threads)
    with console.status(f"perturbing {adata.n_obs:,} cells ..."):
        res = tl.perturb(adata, perturbation, context=context, model=m, seed=seed)
    write(res, out)
    console.print(f"[green]Wrote[/] {out}: {res.n_obs:,} predicted {perturbation} cells")


@app.command("serve")
def serve(
    model: str | None = typer.Option(None, help=MODEL_HELP),
    host: str | None = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default 8000)"),
    api_key: str | None = typer.Option(None, envvar="C2S_API_KEY", help="require this Bearer key"),
    max_body_mb: float = typer.Option(4.0, help="largest accepted request body, MB"),
    threads: int | None = typer.Option(None, help="torch threads"),
) -> None:
    """Serve a model over an OpenAI-compatible API plus C2S task endpoints."""
    from ..models.server import serve as run

    settings = _settings(model, threads)
    m = _load(model, threads)
    host, port = host or settings.host, port or settings.port
    if host not in ("127.0.0.1", "localhost", "::1") and not (api_key or settings.api_key):
        console.print("[yellow]Warning:[/] serving on a non-local address without an API key")
    console.print(f"Serving [bold]{m.name}[/] on http://{host}:{port}/v1 (Ctrl-C to stop)")
    run(m, host=host, port=port, api_key=api_key or settings.api_key, max_body_bytes=int(max_body_mb * 1e6))


@app.command("train")
def train(
    out: Path | None = typer.Option(
        None, help="output model directory (default without --data: the embedded model's folder)"
    ),
    data: str | None = typer.Option(
        None,
        help="AnnData to fine-tune on (.h5ad or a bundled name); without it "
        "the embedded model is reproduced from the bundled Kang data",
    ),
    base: str | None = typer.Option(
        None,
        help="model to start from: a local Hugging Face directory or a pulled "
        "model's name such as smollm2 (default: embedded); without --data it is "
        "fine-tuned on the bundled Kang data with the embedded model's split and "
        "tasks",
    ),
    task: str | None = typer.Option(
        None,
        help="with --data: cell_type, generation, perturbation (comma-separated; default cell_type, GRPO perturbation); "
        "planner: LoRA-tune --base (default smollm2) as the tuned planner's tool chooser on the planning question "
        "set --data (default development)",
    ),
    method: str = typer.Option("full", help="with --data: full, lora or grpo"),
    reward: str = typer.Option(
        "program_agreement,validity,distribution", help="GRPO rewards (comma-separated registered names)"
    ),
    program: str = typer.Option("ifn_alpha", help="gene program of the program_agreement reward"),
    steps: int = typer.Option(200, help="with --data: optimiser steps"),
    batch_size: int | None = typer.Option(None, help="SFT: examples per step (16); GRPO: prompts per step (4)"),
    num_generations: int = typer.Option(4, help="GRPO: completions per prompt"),
    beta: float = typer.Option(0.1, help="GRPO: KL coefficient to the starting model"),
    label_key: str = typer.Option(CELL_TYPE, help="obs column of cell types"),
    condition_key: str = typer.Option(CONDITION, help="obs column of conditions"),
    control: str = typer.Option("ctrl", help="condition value of control cells"),
    perturbation: str | None = typer.Option(
        None, help="perturbation name in prompts (default: the perturbed condition's value)"
    ),
    hold_out: str | None = typer.Option(
        None, help="cell types whose perturbed cells are never trained on and are evaluated on (comma-separated)"
    ),
    seed: int = typer.Option(0, help="split and training seed"),
    epochs: int = typer.Option(18, help="without --data: passes over the training examples"),
    max_minutes: float = typer.Option(26.0, help="wall-time cap; training stops and saves at the cap"),
    top_k: int | None = typer.Option(None, help="fine-tuning: genes per cell sentence in every task"),
    threads: int = typer.Option(2, help="torch threads"),
    resume: bool = typer.Option(False, help="continue the run in --out (from its latest checkpoint with --data)"),
    lr: float | None = typer.Option(
        None, help="peak learning rate (default 1.5e-3 without --data, 2e-4 SFT, 5e-5 GRPO)"
    ),
    evaluate: bool = typer.Option(True, help="without --data: evaluate on held-out cells and write the model card"),
) -> None:
    """Train a C2S model. Without --data: reproduce the embedded model from the bundled Kang 2018 data (about
    25-30 minutes on 2 cores, evaluation included). With --data: supervised fine-tuning (full or LoRA) or GRPO with registered
    rewards, from --base (default the embedded model), with a seeded held-out split and its metrics in the
    output model card."""
    import json

    from ..errors import InputError

    if task == "planner":
        from ..agent.planners.chooser import bundled_path
        from ..agent.planners.chooser_data import train as train_chooser
        from ..config import Settings
        from ..training.finetune import DataSpec, FinetuneConfig

        cfg = FinetuneConfig(
            method="lora",
            steps=steps,
            batch_size=batch_size or 16,
            lr=lr or 5e-4,
            threads=threads,
            resume=resume,
            max_minutes=max_minutes,
            data=DataSpec(seed=seed),
        )
        out = out or bundled_path()
        meta = train_chooser(Settings(threads=threads), out, base or "smollm2", data or "development", cfg)
        console.print(f"[green]Trained[/] the tool chooser {out}: {meta['steps']} steps in {meta['minutes']} min")
        return
    if data is None and base is not None:  # the embedded model's data, split and tasks, from another base
        from ..training import data as D

        data, task = "kang2018", task or ",".join((CELL_TYPE, "generation", "perturbation"))
        hold_out, perturbation = hold_out or D.HELD_OUT_PERTURBED[0], perturbation or D.PERTURBATION
    if data is None:
        from ..training.evaluate import evaluate as run_eval
        from ..training.train import TrainConfig
        from ..training.train import train as run_train

        out = out or Path("data/models/c2s-embedded")
        meta = run_train(
            out,
            TrainConfig(
                epochs=epochs,
                max_minutes=max_minutes,
                threads=threads,
                resume=resume,
                lr=lr or 1.5e-3,
                warmup_steps=20 if resume else 60,
            ),
            progress=True,
        )
        console.print(
            f"[green]Trained[/] {out}: {meta['training']['epochs_done']} epochs in {meta['training']['minutes']} min"
        )
        if evaluate:
            metrics = run_eval(out, threads=threads)
            console.print(
                json.dumps(
                    {
                        "cell_type_accuracy": metrics[CELL_TYPE]["accuracy"],
                        "logistic_regression_accuracy": metrics["logistic_regression"]["accuracy"],
                        "generation_type_fidelity": metrics["generation"]["fraction_classified_as_conditioned_type"],
                    },
                    indent=1,
                )
            )
        return
    from ..training.finetune import DataSpec, FinetuneConfig, finetune
    from ..training.grpo import GRPOSettings, grpo

    if out is None:
        raise InputError(
            "--out", "is needed with --data", "name the folder for the trained model, e.g. --out models/mine"
        )
    split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else ()  # noqa: E731
    spec = DataSpec(
        label_key=label_key,
        condition_key=condition_key,
        control=control,
        perturbation=perturbation,
        hold_out=split(hold_out),
        seed=seed,
    )
    if method == "grpo":
        tasks = split(task or "perturbation")
        if len(tasks) != 1:
            raise InputError("--task", f"{tasks} gives {len(tasks)} tasks", "GRPO trains one task at a time")
        cfg = GRPOSettings(
            rewards=split(reward),
            reward_options={"program": program},
            task=tasks[0],
            steps=steps,
            num_generations=num_generations,
            prompts_per_step=batch_size or 4,
            lr=lr or 5e-5,
            beta=beta,
            threads=threads,
            resume=resume,
            data=spec,
        )
        meta = grpo(data, out, base, cfg, progress=True)
        console.print(
            f"[green]GRPO[/] {out}: {meta['training']['steps']} steps in {meta['training']['minutes']} min; "
            f"curves in {out / 'grpo_curves.png'}"
        )
    else:
        cfg = FinetuneConfig(
            tasks=split(task or CELL_TYPE),
            method=method,
            steps=steps,
            batch_size=batch_size or 16,
            lr=lr or 2e-4,
            threads=threads,
            resume=resume,
            top_k=top_k,
            max_minutes=max_minutes,
            data=spec,
        )
        meta = finetune(data, out, base, cfg, progress=True)
        console.print(
            f"[green]Fine-tuned[/] {out}: {meta['training']['steps']} steps in {meta['training']['minutes']} min"
        )
    console.print(json.dumps(meta.get("metrics", {}), indent=1, default=str)[:3000])
