"""Train the embedded C2S model (a ~4M-parameter Llama-style causal LM) on the bundled Kang 2018 data.

Deterministic for a given seed and epoch count; a wall-time cap stops early and still saves a usable model,
and checkpoints are written every few minutes. Loss per token: the label of a cell-type prompt (class-balanced,
label-smoothed), a lighter language-model loss on the cell sentence of that prompt (it calibrates the
out-of-distribution check), and the response of the generation and perturbation prompts.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..conventions.slots import CELL_TYPE, CONDITION
from ..models.backend import length_buckets
from . import data as D

MODEL_FORMAT = "c2s-agent-model/1"


@dataclass
class TrainConfig:
    epochs: int = 18
    batch_tokens: int = 4096
    lr: float = 1.5e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    w_sentence: float = 0.25  # LM loss on the sentence of cell-type prompts
    w_generation: float = 1.0
    w_perturbation: float = 0.5
    min_keep: float = 0.5  # epochs after the first see counts thinned binomially, keep rate ~ U(min_keep, 1); 1: off
    min_cells_per_type: int = 60  # thinned epochs repeat (differently thinned) cells of rarer types up to this count
    unconditional: float = 0.1  # fraction of generation prompts without their cell type (for guidance)
    guidance: float = 1.0  # the model's default classifier-free guidance weight for generation
    bfloat16: bool = True  # bfloat16 autocast where the CPU computes in bfloat16 natively
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 688
    min_gene_count: int = 2  # genes seen fewer times in training sentences are not in the vocabulary
    condition_genes: int = 50  # cell-type prompts at inference leave out the genes most changed by stimulation
    seed: int = D.SEED
    threads: int = 2
    max_minutes: float = 26.0
    checkpoint_minutes: float = 4.0
    resume: bool = False  # continue from the model already in the output directory (same vocabulary)


def _vocabulary(cs, rows, min_count: int) -> list[str]:
    counts = Counter()
    for k, r in ((D.K_CLASSIFY, rows),):
        block = cs.idx[r, :k]
        counts.update(block[block >= 0].tolist())
    keep = sorted((g for g, n in counts.items() if n >= min_count), key=lambda g: (-counts[g], g))
    return [str(cs.genes[g]) for g in keep]


def prepare(cfg: TrainConfig):
    """Data, split, sentences, vocabulary, tokenizer and examples."""
    from ..data import read
    from ..models.prompts import embedded
    from ..models.tokenizer import build_tokenizer, label_token, template_words
    from ..sentences import to_sentences

    adata = read("kang2018")
    split = D.make_split(adata, cfg.seed)
    cs = to_sentences(adata, top_k=None, tie_break=D.TIE_BREAK)
    genes = _vocabulary(cs, split.train, cfg.min_gene_count)
    # restrict sentences to vocabulary genes so K always counts known genes
    in_vocab = np.isin(cs.genes, np.asarray(genes, dtype=object))
    cs = _restrict(cs, in_vocab)
    labels = sorted(adata.obs[CELL_TYPE].astype(str).unique())
    conditions = sorted(adata.obs[CONDITION].astype(str).unique())
    ps = embedded()
    words = template_words(
        [t for ts in ps.prompts.values() for t in ts] + [t for ts in ps.responses.values() for t in ts]
    )
    words += [label_token(x) for x in labels] + conditions + [D.PERTURBATION]
    tok = build_tokenizer(genes, words)
    examples = D.build_examples(adata, cs, split, cfg.seed, cfg.unconditional)
    return adata, split, cs, genes, labels, conditions, tok, examples


def thinned_examples(adata, split, genes: list[str], cfg: TrainConfig, epoch: int):
    """The training examples of one epoch from counts thinned binomially (each cell keeps a fraction drawn
    from U(min_keep, 1) of its reads): the same cells at other sequencing depths, so sentences vary in the
    order and membership of their lower-ranked genes. Training cells of types with fewer than
    ``min_cells_per_type`` cells are repeated, each copy thinned on its own."""
    import anndata as ad

    from ..sentences import to_sentences

    rng = np.random.default_rng([cfg.seed, epoch])
    ct = adata.obs[CELL_TYPE].astype(str).to_numpy()[split.train]
    extra = [split.train[ct == t] for t in np.unique(ct)]
    extra = np.concatenate([np.resize(rows, max(0, cfg.min_cells_per_type - len(rows))) for rows in extra])
    rows = np.concatenate([np.arange(adata.n_obs), extra])
    obs = adata.obs.iloc[rows].set_axis([f"cell{i}" for i in range(len(rows))])
    x = ad.AnnData(adata.X[rows], obs=obs, var=adata.var)
    split = D.Split(
        np.concatenate([split.train, adata.n_obs + np.arange(len(extra))]), split.test, split.held_out_perturbed
    )
    counts = x.X.tocsr()
    keep = rng.uniform(cfg.min_keep, 1.0, x.n_obs)
    per_entry = np.repeat(keep, np.diff(counts.indptr))
    counts.data = rng.binomial(counts.data.astype(np.int64), per_entry).astype(np.float32)
    counts.eliminate_zeros()
    x.X = counts
    cs = to_sentences(x, top_k=None, tie_break=D.TIE_BREAK)
    cs = _restrict(cs, np.isin(cs.genes, np.asarray(genes, dtype=object)))
    return D.build_examples(x, cs, split, cfg.seed + epoch, cfg.unconditional)


def gene_priority(adata, genes: list[str]) -> list[str]:
    """The vocabulary genes in the tie-break order used for training (descending mean log1p(CP10k) over the
    whole Kang dataset, then gene index); inference breaks ties the same way for any input."""
    from ..data import prepare
    from ..sentences import gene_vocabulary

    x = prepare(adata)
    names, _ = gene_vocabulary(x.var_names)
    means = np.asarray(x.X.mean(axis=0)).ravel()
    order = names[np.lexsort((np.arange(len(names)), -means))]
    keep = set(genes)
    return [str(g) for g in order if g in keep]


def _restrict(cs, keep_gene: np.ndarray):
    from ..sentences import CellSentences

    ok = (cs.idx >= 0) & keep_gene[np.maximum(cs.idx, 0)]
    idx = np.full_like(cs.idx, -1)
    vals = np.zeros_like(cs.values) if cs.values is not None else None
    for i in range(len(cs)):
        row = cs.idx[i][ok[i]]
        idx[i, : len(row)] = row
        if vals is not None:
            vals[i, : len(row)] = cs.values[i][ok[i]]
    width = int(ok.sum(axis=1).max())
    return CellSentences(idx[:, :width], cs.genes, cs.obs_names, None if vals is None else vals[:, :width], cs.params)


def encode(tok, examples, labels, cfg: TrainConfig):
    """Token ids and per-token loss weights (and smoothing) for each example."""
    from ..models.tokenizer import label_token

    freq = Counter(e.label for e in examples if e.task == CELL_TYPE)
    top = max(freq.values())
    class_w = {lab: math.sqrt(top / n) for lab, n in freq.items()}
    norm = sum(class_w[e.label] for e in examples if e.task == CELL_TYPE) / sum(freq.values())
    eos = tok.eos_token_id
    out = []
    for e in examples:
        p = tok(e.prompt).input_ids
        r = tok(e.response, add_special_tokens=False).input_ids + [eos]
        ids = p + r
        w = np.zeros(len(ids), np.float32)
        eps = np.zeros(len(ids), np.float32)
        if e.task == CELL_TYPE:
            w[1 : len(p)] = cfg.w_sentence
            w[len(p)] = class_w[e.label] / norm
            eps[len(p)] = cfg.label_smoothing
            w[len(p) + 1 :] = 0.1
            assert tok.convert_ids_to_tokens(r[0]) == label_token(e.label)
        else:
            w[len(p) :] = cfg.w_generation if e.task == "generation" else cfg.w_perturbation
        out.append((np.asarray(ids, np.int64), w, eps))
    return out


def _batches(encoded, batch_tokens: int, rng) -> list[list[int]]:
    lengths = [len(e[0]) for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: (lengths[i], rng.random()))
    batches = length_buckets(lengths, batch_tokens, order)
    rng.shuffle(batches)
    return batches


def _collate(encoded, rows, pad_id):
    import torch

    n = max(len(encoded[i][0]) for i in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    w = torch.zeros((len(rows), n))
    eps = torch.zeros((len(rows), n))
    for b, i in enumerate(rows):
        x, wi, ei = encoded[i]
        ids[b, : len(x)], mask[b, : len(x)] = torch.from_numpy(x), 1
        w[b, : len(x)], eps[b, : len(x)] = torch.from_numpy(wi), torch.from_numpy(ei)
    return ids, mask, w, eps


def make_model(cfg: TrainConfig, tok, max_len: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=max(256, 64 * math.ceil(max_len / 64)),
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def _resume(out: Path, tok):
    """The model saved in ``out`` and its training history; its vocabulary must match this run's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..errors import InputError

    if not (out / "config.json").exists():
        raise InputError(out, "holds no model to resume from", "train without --resume first")
    if AutoTokenizer.from_pretrained(out).get_vocab() != tok.get_vocab():
        raise InputError(out, "has a different vocabulary from this training run", "train from scratch (no --resume)")
    old = json.loads((out / "c2s_model.json").read_text())["training"]
    history = old.pop("earlier_runs", []) + [{k: old.get(k) for k in ("steps", "epochs_done", "minutes", "config")}]
    return AutoModelForCausalLM.from_pretrained(out), history


def save(model, tok, out: Path, meta: dict, reverse=None) -> None:
    """Write the model directory atomically (a temporary folder renamed into place)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if reverse is not None:
        reverse.save(tmp / "reverse_transform.json")
    elif (out / "reverse_transform.json").exists():
        shutil.copy(out / "reverse_transform.json", tmp / "reverse_transform.json")
    for extra in ("README.md",):
        if (out / extra).exists():
            shutil.copy(out / extra, tmp / extra)
    (tmp / "c2s_model.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def train(out: str | Path, cfg: TrainConfig | None = None, progress: bool = True) -> dict:
    """Train and save the embedded model to ``out``; returns the metadata written to ``c2s_model.json``."""
    import torch
    from rich.progress import Progress

    from ..sentences import ReverseTransform

    cfg = cfg or TrainConfig()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    adata, split, cs, genes, labels, conditions, tok, examples = prepare(cfg)
    encoded = encode(tok, examples, labels, cfg)
    max_len = max(len(e[0]) for e in encoded)
    history = []
    if cfg.resume:
        model, history = _resume(Path(out), tok)
    else:
        model = make_model(cfg, tok, max_len)
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = len(_batches(encoded, cfg.batch_tokens, np.random.default_rng(0)))
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        # cosine over the planned steps (counted on the unaugmented epoch; oversampled epochs are ~12% longer and
        # end at the floor learning rate); on a slow machine the wall-time cap moves the schedule on so the
        # learning rate is still annealed when training stops at the cap
        done = max(step / total, (time.time() - t_train) / (cfg.max_minutes * 60 - (t_train - t0)))
        warm = min(1.0, (step + 1) / cfg.warmup_steps)
        return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))

    reverse = ReverseTransform.fit(cs.subset(split.train), seed=cfg.seed)
    meta = {
        "format": MODEL_FORMAT,
        "name": "c2s-embedded",
        "prompt_set": "embedded",
        "organism": "Homo sapiens",
        "labels": labels,
        "conditions": conditions,
        "perturbations": [D.PERTURBATION],
        "top_k": {CELL_TYPE: D.K_CLASSIFY, "generation": D.K_GENERATE, "perturbation": D.K_PERTURB},
        "tie_break": D.TIE_BREAK,
        "n_genes": len(genes),
        "n_params": n_params,
        "single_token_labels": True,
        "tasks": [CELL_TYPE, "generation", "perturbation"],
        "genes": genes,
        **({"generation_guidance": cfg.guidance} if cfg.unconditional > 0 else {}),
        "gene_priority": gene_priority(adata, genes),
        "condition_genes": D.condition_genes(adata, split.train, cfg.condition_genes, genes),
        "training": {
            "config": asdict(cfg),
            "data": "kang2018 (bundled data/kang2018_ifnb_pbmc_2k.h5ad)",
            "n_examples": Counter(e.task for e in examples),
            "steps_per_epoch": steps_per_epoch,
        },
        "split": {
            "seed": cfg.seed,
            "test_fraction": D.TEST_FRACTION,
            "stratify": CELL_TYPE,
            "n_train": len(split.train),
            "n_test": len(split.test),
            "held_out_perturbed": {
                CELL_TYPE: D.HELD_OUT_PERTURBED[0],
                CONDITION: D.HELD_OUT_PERTURBED[1],
                "n_cells_removed_from_training": len(split.held_out_perturbed),
            },
            "test_obs_names": adata.obs_names[split.test].tolist(),
        },
    }
    model.train()
    bf16 = cfg.bfloat16 and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    meta["training"]["bfloat16_autocast"] = bf16
    t_train = time.time()
    step, tokens, last_ckpt, stopped_early, losses = 0, 0, time.time(), False, []
    with Progress(disable=not progress) as bar:
        task = bar.add_task("training", total=total)
        for epoch in range(cfg.epochs):
            if epoch and cfg.min_keep < 1:
                encoded = encode(tok, thinned_examples(adata, split, genes, cfg, epoch), labels, cfg)
            batches = _batches(encoded, cfg.batch_tokens, rng)
            for done_in_epoch, rows in enumerate(batches, 1):
                epochs_done = epoch + done_in_epoch / len(batches)
                ids, mask, w, eps = _collate(encoded, rows, tok.pad_token_id)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                logp = torch.log_softmax(logits, -1)
                target = ids[:, 1:]
                nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                e = eps[:, 1:]
                per_tok = (1 - e) * nll + e * (-logp.mean(-1))
                wt = w[:, 1:]
                loss = (per_tok * wt).sum() / wt.sum().clamp_min(1e-6)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                tokens += int(mask.sum())
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, description=f"epoch {epoch + 1} loss {np.mean(losses[-50:]):.3f}")
                if not progress and step % 25 == 0:
                    print(
                        f"step {step}/{total} epoch {epoch + 1} loss {np.mean(losses[-25:]):.4f} "
                        f"{tokens / (time.time() - t0):.0f} tok/s",
                        flush=True,
                    )
                if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                    meta["training"].update(steps=step, epochs_done=round(epochs_done, 2), finished=False)
                    save(model, tok, Path(out), meta, reverse)
                    last_ckpt = time.time()
                if time.time() - t0 > cfg.max_minutes * 60:
                    stopped_early = True
                    break
            if stopped_early:
                break
    model.eval()
    meta["training"]["earlier_runs"] = history
    meta["training"].update(
        steps=step,
        epochs_done=round(epochs_done, 2),
        finished=not stopped_early,
        stopped_at_time_cap=stopped_early,
        minutes=round((time.time() - t0) / 60, 1),
        tokens_per_s=round(tokens / (time.time() - t0)),
        final_loss=round(float(np.mean(losses[-50:])), 4),
        torch=torch.__version__,
    )
    save(model, tok, Path(out), meta, reverse)
    return meta
