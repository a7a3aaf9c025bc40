"""Cells/s of the embedded C2S model on one GPU: cell type scoring (annotate) and embeddings, as c2s-agent
computes them, on synthetic cells. Prints one JSON line.

Self-contained: needs only torch, transformers and numpy (no c2s_agent import, so it runs on a bare GPU image)
and the repository's data/models/c2s-embedded and prompts/models/embedded.toml. From the repository root:

    python3 bench/scale/gpu_throughput.py --cells 200000            # CUDA, float32 and bfloat16
    python3 bench/scale/gpu_throughput.py --cells 200 --device cpu  # a quick check without a GPU

What is timed, per dtype: the forward passes of batches of prompts already tokenised and padded on the host,
host-to-device copies included, with the work of c2s-agent's transformers backend (annotate: the log-probability
of every label token after the prompt plus the prompt's mean token NLL; embed: the decoder's last hidden state
averaged over real tokens). Tokenising (CPU) is timed apart, per process. Each synthetic cell is a sentence of
128 of the model's genes drawn by a Zipf law over its gene order (the model's top-K for cell types), so prompts
have the length of real ones (about 141 tokens).
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "data" / "models" / "c2s-embedded"


def synthetic_prompts(meta: dict, template: str, n: int, k: int, seed: int = 0) -> list[str]:
    genes = np.asarray(meta.get("gene_priority") or meta["genes"], dtype=object)
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(genes) + 1) ** 0.8
    weights /= weights.sum()
    return [
        template.format(cell=" ".join(genes[rng.choice(len(genes), size=k, replace=False, p=weights)]))
        for _ in range(n)
    ]


def batches(ids: list[list[int]], size: int, pad: int):
    """Left-padded (ids, mask, positions) tensors of ``size`` prompts at a time, prompts sorted by length."""
    import torch

    order = np.argsort([len(x) for x in ids], kind="stable")
    out = []
    for a in range(0, len(order), size):
        rows = [ids[i] for i in order[a : a + size]]
        width = max(map(len, rows))
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            x[b, width - len(r) :] = torch.tensor(r)
            mask[b, width - len(r) :] = 1
        out.append((x.pin_memory() if torch.cuda.is_available() else x, mask, (mask.cumsum(-1) - 1).clamp_min(0)))
    return out


def timed(fn, data, device) -> float:
    import torch

    fn(*data[0])  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in data:
        fn(*batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(dtype: str, device: str, data, label_ids: list[int], n: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=getattr(torch, dtype)).to(device).eval()

    def move(x, mask, pos):
        return x.to(device, non_blocking=True), mask.to(device, non_blocking=True), pos.to(device, non_blocking=True)

    @torch.inference_mode()
    def annotate(x, mask, pos):
        x, mask, pos = move(x, mask, pos)
        logits = model(input_ids=x, attention_mask=mask, position_ids=pos).logits.float()
        b, t, v = logits.shape
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, v), x[:, 1:].reshape(-1), reduction="none"
        ).view(b, t - 1)
        real = (mask[:, 1:] * mask[:, :-1]).float()
        return (
            torch.log_softmax(logits[:, -1], -1)[:, label_ids].cpu(),
            ((nll * real).sum(-1) / real.sum(-1).clamp_min(1)).cpu(),
        )

    @torch.inference_mode()
    def embed(x, mask, pos):
        x, mask, pos = move(x, mask, pos)
        hidden = model.base_model(input_ids=x, attention_mask=mask, position_ids=pos).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).cpu()

    return {
        "annotate_cells_per_s": round(n / timed(annotate, data, device), 1),
        "embed_cells_per_s": round(n / timed(embed, data, device), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=2048, help="prompts per forward pass (a large GPU takes thousands)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", default="float32,bfloat16")
    args = p.parse_args()

    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    meta = json.loads((MODEL / "c2s_model.json").read_text())
    prompts = tomllib.loads((ROOT / "prompts" / "models" / "embedded.toml").read_text())
    k = int(meta.get("top_k", {}).get("cell_type", 200))
    texts = synthetic_prompts(meta, prompts["cell_type"]["prompt"].replace("{num_genes}", str(k)), args.cells, k)
    tok = AutoTokenizer.from_pretrained(MODEL)
    t0 = time.perf_counter()
    ids = tok(texts, add_special_tokens=True)["input_ids"]
    tokenize_s = time.perf_counter() - t0
    label_ids = tok.convert_tokens_to_ids([x.replace(" ", "_") for x in meta["labels"]])
    data = batches(ids, args.batch, tok.pad_token_id if tok.pad_token_id is not None else 0)
    result = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "cells": args.cells,
        "batch": args.batch,
        "prompt_tokens_mean": round(float(np.mean([len(x) for x in ids])), 1),
        "tokenize_cells_per_s": round(args.cells / tokenize_s, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for dtype in args.dtypes.split(","):
        result[dtype] = measure(dtype, args.device, data, label_ids, args.cells)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
