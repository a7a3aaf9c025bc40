"""C2S model tasks: the reference `cell2sentence` package vs c2s-agent on the same local model and cells.

Run with the reference venv (built by bench/setup_reference.sh; cell2sentence 1.2.0 lives only there):
    $(bash bench/setup_reference.sh) bench/model/run.py [--ref-cells 100] [--threads 2]

Both sides use the embedded model (a Llama-style Hugging Face checkpoint in data/models/c2s-embedded) and the
held-out Kang cells of its split (top 128 genes). Reference code paths: `tasks.predict_cell_types_of_data`
(one prompt at a time through `generate`) and `tasks.embed_cells` (batches of 8, mean over all positions).
Ours: `C2SModel.predict_cell_types` (label scoring in length-bucketed batched forward passes, and greedy
generation) and `C2SModel.embed` (mean over real tokens). Prints cells/s, ratios and accuracies, and the ceiling:
this CPU's peak matmul rate over the matmul FLOPs per cell of our forward passes, the most any implementation of
the same model on the same cells could reach here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "model"
K = 128


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-cells", type=int, default=100, help="held-out cells the (slow) reference runs on")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from cell2sentence import CSData, CSModel, tasks

    from c2s_agent.config import Settings
    from c2s_agent.data import prepare, read
    from c2s_agent.models import load_model
    from c2s_agent.models.tokenizer import label_token

    model_dir = ROOT / "data" / "models" / "c2s-embedded"
    ours = load_model(str(model_dir), Settings(threads=args.threads))
    kang = read("kang2018")
    test = kang[ours.meta["split"]["test_obs_names"]].copy()
    truth = test.obs["cell_type"].astype(str).to_numpy()
    n_ref = min(args.ref_cells, test.n_obs)
    sub = test[:n_ref].copy()
    print(
        f"model: {model_dir.name} ({ours.meta['n_params'] / 1e6:.1f}M params), {test.n_obs} held-out cells, "
        f"reference on the first {n_ref}, top {K} genes, {args.threads} threads"
    )

    # ---- reference: data, model wrapper (it copies the model to its own folder)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    norm = prepare(sub)
    norm.obs["organism"] = "Homo sapiens"  # the reference's prompts name the organism from this column
    arrow, vocab = CSData.adata_to_arrow(
        adata=norm, random_state=42, sentence_delimiter=" ", label_col_names=["cell_type", "organism"]
    )
    csdata = CSData.csdata_from_arrow(arrow_dataset=arrow, vocabulary=vocab, save_dir=str(WORK), save_name="ds")
    csmodel = CSModel(model_name_or_path=str(model_dir), save_dir=str(WORK), save_name="model")
    tokens = {label_token(x): x for x in ours.known_labels}
    pattern = re.compile("|".join(sorted(map(re.escape, tokens), key=len, reverse=True)))

    def parse(text: str) -> str:
        found = pattern.findall(text)
        return tokens[found[-1]] if found else "unknown"

    t0 = time.perf_counter()
    ref_out = tasks.predict_cell_types_of_data(csdata, csmodel, n_genes=K, max_num_tokens=4)
    ref_pred_s = time.perf_counter() - t0
    ref_pred = np.array([parse(t) for t in ref_out])
    t0 = time.perf_counter()
    ref_emb = np.asarray(tasks.embed_cells(csdata, csmodel, n_genes=K, inference_batch_size=8))
    ref_emb_s = time.perf_counter() - t0

    # ---- ours (warm: the model is loaded once per process)
    t0 = time.perf_counter()
    df = ours.predict_cell_types(test, threshold=0.0)
    our_pred_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = ours.predict_cell_types(test, mode="generate", threshold=0.0)
    our_gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = ours.embed(test)
    our_emb_s = time.perf_counter() - t0
    pred = df["label"].to_numpy()
    # the same model in bfloat16 (a dtype choice of our backend; the CPU has avx512_bf16 here)
    ours_bf16 = load_model(str(model_dir), Settings(threads=args.threads, dtype="bfloat16"))
    t0 = time.perf_counter()
    df16 = ours_bf16.predict_cell_types(test, threshold=0.0)
    bf16_pred_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_bf16.embed(test)
    bf16_emb_s = time.perf_counter() - t0

    # the ceiling: matmul FLOPs per cell (counted on our forward passes) against this CPU's peak matmul rate
    flops_score, flops_embed = _flops_per_cell(ours, test)
    peak = {dt: _peak_matmul_gflops(getattr(torch, dt)) for dt in ("float32", "bfloat16")}

    def acc(p, t):
        return float((np.asarray(p) == np.asarray(t)).mean())

    from sklearn.metrics import silhouette_score

    rows = [
        ("cell type prediction", n_ref / ref_pred_s, test.n_obs / our_pred_s),
        ("  (ours, generate mode)", n_ref / ref_pred_s, test.n_obs / our_gen_s),
        ("  (ours, bfloat16)", n_ref / ref_pred_s, test.n_obs / bf16_pred_s),
        ("cell embeddings", n_ref / ref_emb_s, test.n_obs / our_emb_s),
        ("  (ours, bfloat16)", n_ref / ref_emb_s, test.n_obs / bf16_emb_s),
    ]
    print(f"\n{'task':28s} {'reference cells/s':>18s} {'c2s-agent cells/s':>18s} {'ratio':>8s}")
    for name, r, o in rows:
        print(f"{name:28s} {r:18.1f} {o:18.1f} {o / r:7.1f}x")
    print(
        f"\naccuracy on the same {n_ref} cells: reference {acc(ref_pred, truth[:n_ref]):.3f}, "
        f"c2s-agent score mode {acc(pred[:n_ref], truth[:n_ref]):.3f}, generate mode "
        f"{acc(gen['label'].to_numpy()[:n_ref], truth[:n_ref]):.3f}"
    )
    print(
        f"accuracy on all {test.n_obs} held-out cells (c2s-agent): score {acc(pred, truth):.3f}, "
        f"generate {acc(gen['label'], truth):.3f}, score in bfloat16 {acc(df16['label'], truth):.3f}"
    )
    print(
        f"embedding silhouette by cell type (cosine, same {n_ref} cells): reference "
        f"{silhouette_score(ref_emb, truth[:n_ref], metric='cosine'):.3f}, c2s-agent "
        f"{silhouette_score(emb[:n_ref], truth[:n_ref], metric='cosine'):.3f}"
    )
    print(f"reference outputs that name no known label: {(ref_pred == 'unknown').sum()} of {n_ref}")
    print(
        f"\nceiling: peak matmul rate on {args.threads} threads {peak['float32']:.0f} GFLOP/s float32, "
        f"{peak['bfloat16']:.0f} GFLOP/s bfloat16; matmul work per cell {flops_score:.3f} GFLOP (label scoring), "
        f"{flops_embed:.3f} GFLOP (embedding)"
    )
    for name, work, ref, ours_f32, ours_bf16 in (
        ("cell type prediction", flops_score, n_ref / ref_pred_s, test.n_obs / our_pred_s, test.n_obs / bf16_pred_s),
        ("cell embeddings", flops_embed, n_ref / ref_emb_s, test.n_obs / our_emb_s, test.n_obs / bf16_emb_s),
    ):
        best = peak["bfloat16"] / work
        print(
            f"{name:22s} at peak: {best:7.1f} cells/s = {best / ref:5.1f}x the reference at most; ours reach "
            f"{100 * ours_f32 * work / peak['float32']:.0f}% (float32) / {100 * ours_bf16 * work / peak['bfloat16']:.0f}% "
            f"(bfloat16) of peak"
        )


def _peak_matmul_gflops(dtype, n: int = 2048, repeats: int = 20) -> float:
    """The best of several large square matmuls: an upper bound on what any forward pass can sustain."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def _flops_per_cell(model, cells) -> tuple[float, float]:
    """GFLOP per cell of our label scoring and embedding (torch's FLOP counter over the real forward passes)."""
    from torch.utils.flop_counter import FlopCounterMode

    sub = cells[:50]
    out = []
    for run in (lambda: model.predict_cell_types(sub, threshold=0.0), lambda: model.embed(sub)):
        with FlopCounterMode(display=False) as counter:
            run()
        out.append(counter.get_total_flops() / sub.n_obs / 1e9)
    return out[0], out[1]


if __name__ == "__main__":
    main()
