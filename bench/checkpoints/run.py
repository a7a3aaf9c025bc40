"""Released-checkpoint shape: the reference `cell2sentence` package vs c2s-agent on a sub-word LLM (SmolLM2-135M,
pulled by `c2s models pull smollm2`) and the same held-out Kang cells.

    $(bash bench/setup_reference.sh) bench/checkpoints/run.py [--model smollm2|c2s-smollm2] [--cells 40] [--k 64]

1. Prompt formats, token for token (SmolLM2 tokenizer): the reference's own formatters (C2SPromptFormatter,
   C2SMultiCellPromptFormatter) against our `cell2sentence` prompt set read from its package data, for every task
   its package data defines, on the reference's own cell sentences and its seeded template choice; and our
   C2S-Scale plain-completion cell-type prompt against the reference's first cell-type template.
2. Speed on the same cells and prompts (ours, from `C2SModel.cell_type_prompts`): one plain forward pass (logits
   at every position, what any scorer must at least pay); our scoring of all 13 Kang labels (each prompt read
   once); the per-pair path this project had before (the prompt pass, then prompt+label per pair, one forward
   each), on the first cells; the reference's prediction (free greedy generation, one prompt at a time, its
   `CSModel.generate_from_prompt`) and embeddings (`embed_cells_batched`, batches of 8).
3. Accuracy of each prediction path on those cells.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "checkpoints"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", help="smollm2 (the raw stand-in) or c2s-smollm2 (its Kang fine-tune)")
    ap.add_argument("--cells", type=int, default=40, help="held-out cells for our paths")
    ap.add_argument("--ref-cells", type=int, default=10, help="of those, cells for the reference's slow paths")
    ap.add_argument("--pair-cells", type=int, default=4, help="of those, cells for the old per-pair path")
    ap.add_argument("--k", type=int, default=None, help="genes per prompt (default: the model's, 64 for the stand-in)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from c2s_agent.config import Settings
    from c2s_agent.data import read
    from c2s_agent.models import embedded_model_path, load_model

    ours = load_model(args.model, Settings(threads=args.threads))
    ours.top_k["cell_type"] = args.k or (ours.top_k["cell_type"] if ours.meta else 64)
    kang = read("kang2018")
    split = json.loads((embedded_model_path() / "c2s_model.json").read_text())["split"]
    test = kang[split["test_obs_names"]][:: max(1, 400 // args.cells)][: args.cells].copy()
    truth = test.obs["cell_type"].astype(str).to_numpy()
    labels = sorted(kang.obs["cell_type"].astype(str).unique())
    print(
        f"model {args.model}: {ours.backend.model.num_parameters() / 1e6:.1f}M parameters, {len(ours.backend.tok):,}-token "
        f"vocabulary; {test.n_obs} held-out Kang cells, top {ours.top_k['cell_type']} genes, {len(labels)} labels, "
        f"{args.threads} threads"
    )

    check_formats(kang[split["test_obs_names"]][:30].copy(), ours.backend.tok)
    prompts, _, _ = ours.cell_type_prompts(test)
    conts = [ours.prompts.response("cell_type", label=x) for x in labels]
    tok = ours.backend.tok
    n_tok = np.mean([len(tok(p).input_ids) for p in prompts])
    print(
        f"\nprompt tokens per cell {n_tok:.0f}; label tokens {sum(len(tok(c, add_special_tokens=False).input_ids) for c in conts)}"
        f" ({', '.join(str(len(tok(c, add_special_tokens=False).input_ids)) for c in conts)})"
    )

    plain_s, score_s = float("inf"), float("inf")
    for _ in range(2):  # alternately, best of two each: both meet the same machine load
        plain_s = min(plain_s, _timed(lambda: _plain_forward(ours.backend, prompts)))
        score_s = min(score_s, _timed(lambda: ours.backend.score_labels(prompts, conts)))
    n_pair = min(args.pair_cells, len(prompts))
    pair_s = _timed(lambda: _per_pair(ours.backend, prompts[:n_pair], conts)) * len(prompts) / n_pair
    df = ours.predict_cell_types(test, labels=labels, threshold=0.0)
    gen_s = _timed(lambda: ours.predict_cell_types(test, mode="generate", labels=labels, threshold=0.0))
    gen = ours.predict_cell_types(test, mode="generate", labels=labels, threshold=0.0)
    words = copy.copy(ours)  # free text: the model's own words, its label list set aside
    words.meta = {k: v for k, v in ours.meta.items() if k != "labels"}
    free = words.predict_cell_types(test, mode="generate", threshold=0.0)
    emb_s = _timed(lambda: ours.embed(test))

    ref = reference(ours, prompts, test, args.ref_cells, labels)
    n_ref = ref["n"]
    rows = [
        ("cell type prediction, score all labels", ref["predict_cells_s"], len(prompts) / score_s),
        ("  (ours, generate mode over the labels)", ref["predict_cells_s"], len(prompts) / gen_s),
        ("cell embeddings", ref["embed_cells_s"], len(prompts) / emb_s),
    ]
    print(f"\n{'task':42s} {'reference cells/s':>18s} {'c2s-agent cells/s':>18s} {'ratio':>8s}")
    for name, r, o in rows:
        print(f"{name:42s} {r:18.2f} {o:18.2f} {o / r:7.1f}x")
    print(
        f"\nscoring all {len(labels)} labels / one plain forward pass over the same prompts: {score_s / plain_s:.2f}x "
        f"({score_s:.1f} s vs {plain_s:.1f} s)"
    )
    print(
        f"per-pair path (before) / scoring now: {pair_s / score_s:.1f}x (per-pair {len(prompts) / pair_s:.2f} cells/s, "
        f"measured on {n_pair} cells)"
    )

    def acc(pred, upto=None):
        return float((np.asarray(pred)[:upto] == truth[:upto]).mean())

    print(
        f"\naccuracy on the same {n_ref} cells: reference (free generation) {acc(ref['pred'], n_ref):.3f}, "
        f"c2s-agent score {acc(df['label'], n_ref):.3f}, generate over labels {acc(gen['label'], n_ref):.3f}"
    )
    print(
        f"accuracy on all {len(truth)} cells (c2s-agent): score {acc(df['label']):.3f}, generate over labels "
        f"{acc(gen['label']):.3f}; free text names a Cell Ontology term for {(free['cell_ontology_id'] != '').mean():.2f} "
        f"of cells; majority class {max(np.mean(truth == t) for t in labels):.3f}"
    )
    print("reference outputs (first 3):", [t[:60] for t in ref["texts"][:3]])
    print("our free text (first 3):", list(free["generated_text"][:3]))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _plain_forward(backend, prompts):
    """One plain forward pass over the prompts in our batches: logits at every position, nothing else."""
    import torch

    enc = backend._encode(prompts)
    with torch.inference_mode():
        for rows in backend._buckets([len(e) for e in enc]):
            ids, mask, pos = backend._pad([enc[i] for i in rows])
            backend.model(input_ids=ids, attention_mask=mask, position_ids=pos)


def _per_pair(backend, prompts, conts):
    """The scoring this project did before: a pass over the prompts (their NLL), then every prompt+label pair
    from scratch, batched by length."""
    import torch

    enc = backend._encode(prompts)
    lab = [backend.tok(x, add_special_tokens=False)["input_ids"] for x in conts]
    with torch.inference_mode():
        for rows in backend._buckets([len(e) for e in enc]):
            ids, mask, pos = backend._pad([enc[i] for i in rows])
            backend.model(input_ids=ids, attention_mask=mask, position_ids=pos)
        seqs = [e + x for e in enc for x in lab]
        for rows in backend._buckets([len(s) for s in seqs]):
            ids, mask, pos = backend._pad([seqs[r] for r in rows])
            torch.log_softmax(backend.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), -1)


def reference(ours, prompts, test, n_ref, labels) -> dict:
    """The reference's prediction (free greedy generation, one prompt at a time) and embedding paths on our
    prompts, with its CSModel wrapper (which copies the model into its own folder first)."""
    from cell2sentence import CSModel

    from c2s_agent.models.adapters import merged_dir

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    path = merged_dir(Path(ours.backend.path))
    csmodel = CSModel(model_name_or_path=str(path), save_dir=str(WORK), save_name="model")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(csmodel.save_path)
    n_ref = min(n_ref, len(prompts))
    t0 = time.perf_counter()
    texts = [csmodel.generate_from_prompt(model, prompt=p, max_num_tokens=10, do_sample=False) for p in prompts[:n_ref]]
    pred_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(prompts), 8):
        csmodel.embed_cells_batched(model, prompts[i : i + 8])
    emb_s = time.perf_counter() - t0
    pattern = re.compile("|".join(sorted(map(re.escape, labels), key=len, reverse=True)))
    pred = [(pattern.findall(t) or ["unknown"])[0] for t in texts]
    return {
        "n": n_ref,
        "predict_cells_s": n_ref / pred_s,
        "embed_cells_s": len(prompts) / emb_s,
        "pred": pred,
        "texts": texts,
    }


def check_formats(cells, tok) -> None:
    """Our `cell2sentence` prompt set against the reference's formatters, token for token, on the reference's
    own cell sentences (every task its package data defines), and our C2S-Scale cell-type prompt against the
    reference's first cell-type template."""
    from cell2sentence import CSData
    from cell2sentence.prompt_formatter import C2SMultiCellPromptFormatter, C2SPromptFormatter
    from datasets import Dataset, load_from_disk

    from c2s_agent.data import prepare
    from c2s_agent.models import prompts as P

    k, organism = 50, "Homo sapiens"
    work = WORK / "formats"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    norm = prepare(cells)
    norm.obs["organism"] = organism
    arrow, vocab = CSData.adata_to_arrow(
        adata=norm, random_state=42, sentence_delimiter=" ", label_col_names=["cell_type", "organism"]
    )
    ds = load_from_disk(
        CSData.csdata_from_arrow(arrow_dataset=arrow, vocabulary=vocab, save_dir=str(work), save_name="ds").data_path
    )
    ours = P.cell2sentence()
    sentences = [" ".join(s.split(" ")[:k]) for s in ds["cell_sentence"]]
    results = {}
    for task, ref_task in (("cell_type", "cell_type_prediction"), ("generation", "cell_type_generation")):
        ref = C2SPromptFormatter(task=ref_task, top_k_genes=k).format_hf_ds(ds)
        idx = P.reference_indices(ours, task, len(ds))
        mine = [
            (
                ours.format(task, i, cell=s, num_genes=k, organism=organism, label=t),
                ours.response(task, i, cell=s, label=t),
            )
            for i, s, t in zip(idx, sentences, ds["cell_type"])
        ]
        results[task] = _same_tokens(tok, ref, mine)
    groups = [list(range(i, i + 5)) for i in range(0, 25, 5)]
    multi = Dataset.from_dict(
        {
            "multi_cell_groupings": groups,
            "tissue": ["blood"] * 5,
            "organism": [organism] * 5,
            "abstract": ["Interferon-stimulated peripheral blood cells"] * 5,
        }
    )
    for task, ref_task in (
        ("multicell_tissue", "tissue_prediction"),
        ("multicell_tissue_generation", "tissue_conditional_generation"),
        ("multicell_abstract", "natural_language_interpretation"),
    ):
        ref = C2SMultiCellPromptFormatter(task=ref_task, top_k_genes=k).format_hf_ds(ds, multi)
        idx = P.reference_indices(ours, task, len(groups))
        mine = []
        for i, g in zip(idx, groups):
            cells_text = "".join(P.C2S_CELL_LINE.format(n=n, cell=sentences[c]) for n, c in enumerate(g, start=1))
            values = dict(
                cells=cells_text,
                num_genes=k,
                num_cells=len(g),
                organism=organism,
                tissue="blood",
                abstract=multi["abstract"][0],
            )
            mine.append((ours.format(task, i, **values), ours.response(task, i, **values)))
        results[task] = _same_tokens(tok, ref, mine)
    scale = P.get("c2s-scale").prompts["cell_type"][0]
    results["c2s-scale cell_type = reference template 0"] = (
        tok(scale).input_ids == tok(ours.prompts["cell_type"][0]).input_ids,
        1,
    )
    print("\nprompt formats, token for token against the reference package (SmolLM2 tokenizer):")
    for task, (same, n) in results.items():
        print(
            f"  {task:45s} {'identical' if same is True or same == n else 'DIFFERENT'} ({same if same is not True else n}/{n})"
        )


def _same_tokens(tok, ref, mine) -> tuple[int, int]:
    same = sum(
        tok(r["model_input"]).input_ids == tok(p).input_ids and tok(r["response"]).input_ids == tok(q).input_ids
        for r, (p, q) in zip(ref, mine)
    )
    return same, len(mine)


if __name__ == "__main__":
    main()
