"""In-process backend on Hugging Face transformers: loaded once, batched, left-padded, KV-cached generation.

Prompts are sorted by length and cut into batches under a token budget (length buckets), so padding stays
small; every forward pass runs under ``torch.inference_mode`` with explicit position ids (left padding must
not shift positions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from .backend import Completion, Embeddings, GenParams, LabelScores, length_buckets


def _load_metadata(path: Path) -> dict:
    meta = path / "c2s_model.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


class TransformersBackend:
    """A causal LM from a local Hugging Face directory."""

    name = "transformers"

    def __init__(self, path: str | Path, settings=None, batch_tokens: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = Path(path)
        if not (path / "config.json").exists():
            raise InputError(path, "is not a Hugging Face model directory (no config.json)",
                             "give a folder written by save_pretrained, 'embedded', or an http(s) URL")
        threads = getattr(settings, "threads", 0) or os.cpu_count() or 1
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        dtype = getattr(torch, getattr(settings, "dtype", "float32"))
        self.device = getattr(settings, "device", "cpu")
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(path, f"could not be loaded ({exc})", "check the directory holds a complete checkpoint") from None
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model_id = path.name
        self.path = path
        self.metadata = _load_metadata(path)
        vocab = self.model.config.vocab_size
        # logits of a batch are (tokens x vocab) floats: keep them near 100 MB
        self.batch_tokens = batch_tokens or int(min(16384, max(512, 2.5e7 / vocab)))
        self._torch = torch

    # -- batching -------------------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=True)["input_ids"]

    def _buckets(self, lengths: list[int], budget: int | None = None) -> list[list[int]]:
        return length_buckets(lengths, budget or self.batch_tokens)

    def _pad(self, seqs: list[list[int]]):
        torch = self._torch
        n = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for b, s in enumerate(seqs):
            if s:
                ids[b, n - len(s):] = torch.tensor(s)
                mask[b, n - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # -- tasks ----------------------------------------------------------------------------------------------
    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        """log P(label | prompt) for every prompt and label, and each prompt's mean token NLL.

        Labels that are single tokens are scored in one forward pass per batch; otherwise every
        prompt+label pair is scored (prompt and label tokenised separately, as in training)."""
        torch = self._torch
        enc = self._encode(prompts)
        lab = [self.tok(x, add_special_tokens=False)["input_ids"] for x in labels]
        if any(len(x) == 0 for x in lab):
            raise InputError("labels", "include an empty label", "give non-empty label names")
        single = all(len(x) == 1 for x in lab)
        out = np.zeros((len(prompts), len(labels)), np.float64)
        nll = np.zeros(len(prompts), np.float64)
        n_tokens = 0
        with torch.inference_mode():
            for rows in self._buckets([len(e) for e in enc]):
                ids, mask, pos = self._pad([enc[i] for i in rows])
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
                logp = torch.log_softmax(logits, -1)
                n_tokens += int(mask.sum())
                tgt = ids[:, 1:]
                tok_lp = logp[:, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
                real = (mask[:, 1:] * mask[:, :-1]).float()
                nll[rows] = (-(tok_lp * real).sum(-1) / real.sum(-1).clamp_min(1)).cpu().numpy()
                if single:
                    out[rows] = logp[:, -1, [x[0] for x in lab]].cpu().numpy()
            if not single:
                pairs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
                seqs = [enc[i] + lab[j] for i, j in pairs]
                for rows in self._buckets([len(s) for s in seqs]):
                    ids, mask, pos = self._pad([seqs[r] for r in rows])
                    logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), -1)
                    n_tokens += int(mask.sum())
                    for b, r in enumerate(rows):
                        i, j = pairs[r]
                        m = len(lab[j])
                        steps = logp[b, -m - 1:-1].gather(-1, ids[b, -m:].unsqueeze(-1)).sum()
                        out[i, j] = float(steps)
        return LabelScores(out, nll, n_tokens)

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        torch = self._torch
        from transformers import LogitsProcessorList

        enc = self._encode(prompts)
        results: list[Completion | None] = [None] * len(prompts)
        processors = LogitsProcessorList()
        if params.allowed is not None:
            allowed = self.tok.convert_tokens_to_ids(list(params.allowed)) + [self.tok.eos_token_id]
            processors.append(_AllowOnly([a for a in allowed if a is not None and a != self.tok.unk_token_id]))
        sample = params.temperature > 0
        gen_kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=sample, pad_token_id=self.tok.pad_token_id,
                          eos_token_id=self.tok.eos_token_id, return_dict_in_generate=True, output_scores=True)
        if sample:
            gen_kwargs.update(temperature=params.temperature, top_k=params.top_k or None, top_p=params.top_p)
        # generation holds a KV cache per row: budget the batch by prompt + new tokens
        budget = max(self.batch_tokens // 2, 1024)
        with torch.inference_mode():
            for b, rows in enumerate(self._buckets([len(e) + params.max_new_tokens for e in enc], budget)):
                ids, mask, _ = self._pad([enc[i] for i in rows])
                procs = LogitsProcessorList(list(processors))
                if params.ban_repeats:
                    procs.append(_BanRepeats(ids.shape[1], [self.tok.eos_token_id, self.tok.pad_token_id]))
                torch.manual_seed(params.seed + b)
                out = self.model.generate(input_ids=ids, attention_mask=mask, logits_processor=procs, **gen_kwargs)
                new = out.sequences[:, ids.shape[1]:]
                lp = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                for k, i in enumerate(rows):
                    toks = new[k].tolist()
                    n = next((t for t, x in enumerate(toks) if x in (self.tok.eos_token_id, self.tok.pad_token_id)), len(toks))
                    text = self.tok.decode(toks[:n], skip_special_tokens=True)
                    score = lp[k, :n].float()
                    score = torch.where(torch.isfinite(score), score, torch.zeros_like(score))
                    results[i] = Completion(text.strip(), len(enc[i]), n, float(score.sum()), score.tolist(),
                                            "stop" if n < len(toks) or n < params.max_new_tokens else "length")
        return results  # type: ignore[return-value]

    def embed(self, texts: list[str]) -> Embeddings:
        """Mean of the last hidden state over real tokens only (padding never enters the mean)."""
        torch = self._torch
        enc = self._encode(texts)
        out = None
        n_tokens = 0
        with torch.inference_mode():
            for rows in self._buckets([len(e) for e in enc], self.batch_tokens * 2):
                ids, mask, pos = self._pad([enc[i] for i in rows])
                hidden = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                    output_hidden_states=True).hidden_states[-1].float()
                m = mask.unsqueeze(-1).to(hidden.dtype)
                vec = ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), vec.shape[1]), np.float32)
                out[rows] = vec
                n_tokens += int(mask.sum())
        if out is None:
            out = np.zeros((0, self.model.config.hidden_size), np.float32)
        return Embeddings(out, n_tokens)


class _BanRepeats:
    """Forbid any token already generated in this completion (tokens of the prompt stay allowed)."""

    def __init__(self, prompt_len: int, exempt: list[int]):
        self.prompt_len, self.exempt = prompt_len, [e for e in exempt if e is not None]

    def __call__(self, input_ids, scores):
        gen = input_ids[:, self.prompt_len:]
        if gen.shape[1]:
            keep = scores[:, self.exempt].clone()
            scores = scores.scatter(1, gen, float("-inf"))
            scores[:, self.exempt] = keep
        return scores


class _AllowOnly:
    def __init__(self, allowed: list[int]):
        self.allowed = sorted(set(allowed))
        self._mask = None

    def __call__(self, input_ids, scores):
        import torch

        if self._mask is None or self._mask.shape[-1] != scores.shape[-1]:
            self._mask = torch.full((scores.shape[-1],), float("-inf"), device=scores.device)
            self._mask[self.allowed] = 0
        return scores + self._mask
