"""In-process backend on Hugging Face transformers: loaded once, batched, left-padded, KV-cached generation.

Prompts are sorted by length and cut into batches under a token budget (length buckets), so padding stays
small; every forward pass runs under ``torch.inference_mode`` with explicit position ids (left padding must
not shift positions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from . import constraint
from .backend import Completion, Embeddings, GenParams, LabelScores, cut_at_stop, length_buckets

ATTENTION = "c2s_cpu"


def _attention_impl(device: str) -> str:
    """On CPU, our attention (below); elsewhere transformers' sdpa."""
    if not str(device).startswith("cpu"):
        return "sdpa"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _cpu_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION


def _cpu_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """sdpa for prompts; for a single new token, two plain matmuls, which on CPU run several times faster than
    sdpa's kernel over a long KV cache. Models with attention soft-capping keep sdpa throughout."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1 or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch

    if key.shape[1] != query.shape[1]:  # grouped-query attention
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    w = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        w = w.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool else w + attention_mask
    w = torch.softmax(w, -1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), None


@dataclass
class _Packed:
    """Every label's tokens after its first, side by side: the inputs of the continuation pass."""

    ids: object  # (n,) input token of each packed position: a label's token k, predicting its token k+1
    targets: object  # (n,) the token it predicts
    offsets: object  # (n,) position after the prompt's last token, 0 for each label's first packed token
    causal: object  # (n, n) bool: a packed token attends to the earlier packed tokens of its own label
    owner: object  # (n, n_labels) float64: which label each packed position scores


def _pack_continuations(lab: list[list[int]], torch, device) -> _Packed | None:
    """The continuation pass's inputs for labels ``lab`` (token ids); None when every label is one token."""
    segs = [(j, len(x) - 1) for j, x in enumerate(lab) if len(x) > 1]
    if not segs:
        return None
    ids = [t for x in lab for t in x[:-1] if len(x) > 1]
    targets = [t for x in lab for t in x[1:]]
    n = len(ids)
    group = np.repeat(np.arange(len(segs)), [m for _, m in segs])
    offsets = np.concatenate([np.arange(m) for _, m in segs])
    causal = (group[:, None] == group[None, :]) & (np.arange(n)[None, :] <= np.arange(n)[:, None])
    owner = np.zeros((n, len(lab)))
    owner[np.arange(n), [segs[g][0] for g in group]] = 1.0
    as_tensor = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return _Packed(
        as_tensor(ids, torch.long),
        as_tensor(targets, torch.long),
        as_tensor(offsets, torch.long),
        as_tensor(causal, torch.bool),
        as_tensor(owner, torch.float64),
    )


class _Rules:
    """A WordList constraint on a batch of rows during decoding: a token mask per step. Words of one token each
    (the embedded model's genes and labels) need only tensor operations; otherwise each row walks the trie."""

    def __init__(self, trie, n: int, vocab: int, torch, device):
        self.trie, self.torch = trie, torch
        if trie is None:
            return
        self.bias = torch.full((n, vocab), float("-inf"), device=device)
        if trie.single_token:
            words = torch.as_tensor(trie.child_tokens[1], device=device)
            self.words, self.ends = words, torch.as_tensor([*trie.end_tokens, trie.eos], device=device)
            self.bias[:, words] = 0.0
            self.bias[:, self.ends] = 0.0
            self.ended = torch.zeros(n, dtype=torch.bool, device=device)
        else:
            self.states = [constraint.WordState(trie) for _ in range(n)]

    def apply(self, scores, step: int):
        if self.trie is None:
            return scores
        if self.trie.single_token:
            bias = self.bias.clone()
            if step == 0:  # at least one word
                bias[:, self.ends] = float("-inf")
            if step >= self.trie.max_words:
                bias[:, self.words] = float("-inf")
            bias[self.ended] = float("-inf")
            bias[self.ended, self.trie.eos] = 0.0
            return scores + bias
        self.bias.fill_(float("-inf"))
        for b, state in enumerate(self.states):
            self.bias[b, self.torch.as_tensor(state.allowed())] = 0.0
        return scores + self.bias

    def advance(self, tokens) -> None:
        if self.trie is None:
            return
        if self.trie.single_token:
            is_word = self.torch.isin(tokens, self.words)
            if self.trie.distinct:  # a word once only
                self.bias[self.torch.nonzero(is_word)[:, 0], tokens[is_word]] = float("-inf")
            self.ended |= self.torch.isin(tokens, self.ends)
            return
        for state, tok in zip(self.states, tokens.tolist()):
            state.advance(tok)


def _load_metadata(path: Path) -> dict:
    meta = path / "c2s_model.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


class TransformersBackend:
    """A causal LM from a local Hugging Face directory."""

    name = "transformers"
    supports_guidance = True

    def __init__(self, path: str | Path, settings=None, batch_tokens: int | None = None):
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        from .adapters import is_adapter, load_causal_lm

        path = Path(path)
        if not (path / "config.json").exists() and not is_adapter(path):
            raise InputError(
                path,
                "is not a Hugging Face model directory (no config.json)",
                "give a folder written by save_pretrained, 'embedded', or an http(s) URL",
            )
        threads = getattr(settings, "threads", 0) or os.cpu_count() or 1
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        dtype = getattr(torch, getattr(settings, "dtype", "float32"))
        self.device = getattr(settings, "device", "cpu")
        try:
            model, source = load_causal_lm(
                path, settings, dtype=dtype, attn_implementation=_attention_impl(self.device)
            )
            self.model = model.to(self.device).eval()
            self.tok = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise ModelError(
                path, f"could not be loaded ({exc})", "check the directory holds a complete checkpoint"
            ) from None
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
        self._chat = None

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
                ids[b, n - len(s) :] = torch.tensor(s)
                mask[b, n - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # -- tasks ----------------------------------------------------------------------------------------------
    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        """log P(label | prompt) for every prompt and label, and each prompt's mean token NLL, reading each prompt
        once: a forward pass over the prompts (left-padded, length-bucketed) gives the NLL and the first token of
        every label; labels of several tokens continue that pass's KV cache in one more pass over all labels
        packed side by side (each sees the prompt and its own earlier tokens only). Prompt and labels are
        tokenised separately, as in training."""
        torch = self._torch
        enc = self._encode(prompts)
        lab = [self.tok(x, add_special_tokens=False)["input_ids"] for x in labels]
        if any(len(x) == 0 for x in lab):
            raise InputError("labels", "include an empty label", "give non-empty label names")
        out = np.zeros((len(prompts), len(labels)), np.float64)
        nll = np.zeros(len(prompts), np.float64)
        first = [x[0] for x in lab]
        packed = _pack_continuations(lab, torch, self.device)
        n_tokens = 0
        with torch.inference_mode():
            for rows in self._buckets([len(e) for e in enc]):
                ids, mask, pos = self._pad([enc[i] for i in rows])
                res = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=packed is not None)
                logits = res.logits.float()
                n_tokens += int(mask.sum())
                nll[rows] = self._prompt_nll(logits, ids, mask)
                scores = torch.log_softmax(logits[:, -1], -1)[:, first].double()
                if packed is not None:
                    scores += self._continue(res.past_key_values, mask, pos, packed)
                    n_tokens += len(rows) * packed.ids.shape[0]
                out[rows] = scores.cpu().numpy()
        return LabelScores(out, nll, n_tokens)

    def _continue(self, cache, mask, pos, packed):
        """log P(tokens 2.. of each label | prompt, its earlier tokens), summed per label: one forward pass of the
        packed label tokens on the prompts' KV cache, with per-row positions after each prompt's real tokens."""
        torch = self._torch
        b, p = mask.shape
        n = packed.ids.shape[0]
        attend = torch.cat([mask.bool()[:, None, None, :].expand(b, 1, n, p), packed.causal.expand(b, 1, n, n)], -1)
        logits = self.model(
            input_ids=packed.ids.expand(b, n),
            attention_mask=attend,
            past_key_values=cache,
            position_ids=pos[:, -1:] + 1 + packed.offsets,
            use_cache=False,
            cache_position=torch.arange(p, p + n, device=self.device),
        ).logits.float()
        steps = torch.log_softmax(logits, -1).gather(-1, packed.targets.expand(b, n)[..., None])[..., 0].double()
        return steps @ packed.owner

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        """Batched decoding with a preallocated (static) KV cache: one forward pass per new token for a whole
        batch, top-k then top-p sampling over the k best tokens only, and repeats/disallowed tokens masked with
        boolean tensors. Greedy when ``temperature`` is 0. Batch ``b`` samples with seed ``params.seed + b``,
        so the same call gives the same completions. With ``guidance``, each prompt's unconditional twin runs
        in the same batch."""
        enc = self._encode(prompts)
        twins = None
        if params.guidance > 0:
            if params.unconditional is None or len(params.unconditional) != len(prompts):
                raise InputError(
                    "unconditional",
                    "needs one prompt per prompt when guidance > 0",
                    "pass the prompts without their condition, or guidance=0",
                )
            twins = self._encode(list(params.unconditional))
        results: list[Completion | None] = [None] * len(prompts)
        rules = constraint.trie(self.tok, params.words) if params.words else None
        t_max = params.max_new_tokens if rules is None else min(params.max_new_tokens, rules.max_new_tokens())
        # every row holds a KV cache of prompt + new tokens: budget the batch by that length
        budget = max(self.batch_tokens * 2, 4096)
        with self._torch.inference_mode():
            lengths = [(len(e) if twins is None else 2 * max(len(e), len(twins[i]))) + t_max for i, e in enumerate(enc)]
            for b, rows in enumerate(self._buckets(lengths, budget)):
                uncond = None if twins is None else [twins[i] for i in rows]
                rowwise = _Rules(rules, len(rows), self.model.config.vocab_size, self._torch, self.device)
                comps = self._decode([enc[i] for i in rows], params, t_max, rowwise, params.seed + b, uncond)
                for i, c in zip(rows, comps):
                    results[i] = c
        return results  # type: ignore[return-value]

    def _decode(
        self,
        seqs: list[list[int]],
        params: GenParams,
        t_max: int,
        rules: "_Rules",
        seed: int,
        uncond: list[list[int]] | None = None,
    ) -> list[Completion]:
        torch = self._torch
        from transformers import StaticCache

        ids, mask, pos = self._pad(seqs + (uncond or []))  # unconditional twins are rows n..2n-1
        n, p = len(seqs), ids.shape[1]
        copies = ids.shape[0] // n
        eos, pad = self.tok.eos_token_id, self.tok.pad_token_id
        vocab = self.model.config.vocab_size
        used = torch.zeros((n, vocab), dtype=torch.bool, device=self.device)
        exempt = [x for x in (eos, pad) if x is not None]
        gen = torch.Generator(device=self.device).manual_seed(seed)
        full_mask = torch.cat([mask, torch.zeros((n * copies, t_max), dtype=mask.dtype, device=self.device)], 1)
        cache = StaticCache(config=self.model.config, max_cache_len=p + t_max)
        out_tokens = torch.full((n, t_max), pad, dtype=torch.long, device=self.device)
        out_lp = torch.zeros((n, t_max), device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        steps = 0
        logits = self.model(
            input_ids=ids,
            attention_mask=full_mask[:, :p],
            position_ids=pos,
            past_key_values=cache,
            cache_position=torch.arange(p, device=self.device),
            logits_to_keep=0 if params.prompt_nll else 1,
        ).logits
        nll = self._prompt_nll(logits[:n], ids[:n], mask[:n]) if params.prompt_nll else [None] * n
        logits = logits[:, -1]
        next_pos = pos[:, -1:] + 1
        for t in range(t_max):
            scores = rules.apply(self._guided(logits.float(), n, params.guidance), t)
            if params.ban_repeats:
                scores = scores.masked_fill(used, float("-inf"))
            scores[:, eos] = torch.where(torch.isinf(scores).all(-1), 0.0, scores[:, eos])  # nothing left: stop
            tok, lp = self._pick(scores, params, gen)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            out_tokens[:, t], out_lp[:, t] = tok, torch.where(done, torch.zeros_like(lp), lp)
            steps = t + 1
            done |= (tok == eos) | (tok == pad)
            for b in torch.nonzero(~done)[:, 0].tolist() if params.stop else ():
                text = self.tok.decode(out_tokens[b, : t + 1].tolist(), skip_special_tokens=True)
                done[b] = any(x in text for x in params.stop)
            rules.advance(tok)
            if params.ban_repeats:
                used.scatter_(1, tok[:, None], True)
                used[:, exempt] = False
            if bool(done.all()) or t + 1 == t_max:
                break
            full_mask[:, p + t] = (~done).to(full_mask.dtype).repeat(copies)
            logits = self.model(
                input_ids=tok.repeat(copies)[:, None],
                attention_mask=full_mask[:, : p + t + 1],
                position_ids=next_pos,
                past_key_values=cache,
                cache_position=torch.tensor([p + t], device=self.device),
                logits_to_keep=1,
            ).logits[:, -1]
            next_pos = next_pos + 1
        comps = []
        toks, lps = out_tokens[:, :steps].tolist(), out_lp[:, :steps].tolist()
        for k, s in enumerate(seqs):
            row = toks[k]
            m = next((j for j, x in enumerate(row) if x in (eos, pad)), len(row))
            full = self.tok.decode(row[:m], skip_special_tokens=True)
            text = cut_at_stop(full, params.stop)
            comps.append(
                Completion(
                    text.strip(),
                    len(s),
                    m,
                    float(sum(lps[k][:m])),
                    lps[k][:m],
                    "stop" if m < t_max or text != full else "length",
                    nll[k],
                )
            )
        return comps

    def _prompt_nll(self, logits, ids, mask) -> list[float]:
        """Each row's mean NLL of its real prompt tokens (the first has no prediction), by a fused cross-entropy (no
        (batch x tokens x vocab) log-softmax in memory)."""
        torch = self._torch
        b, t, v = logits.shape
        tok_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none"
        ).view(b, t - 1)
        real = (mask[:, 1:] * mask[:, :-1]).float()
        return ((tok_nll * real).sum(-1) / real.sum(-1).clamp_min(1)).tolist()

    @staticmethod
    def _guided(logits, n: int, weight: float):
        """The conditional rows' scores, moved away from their unconditional twins (rows n.. when present)."""
        if logits.shape[0] == n:
            return logits
        import torch

        lp = torch.log_softmax(logits, -1)
        return lp[:n] + weight * (lp[:n] - lp[n:])

    @staticmethod
    def _pick(scores, params: GenParams, gen):
        """(token, its log-probability under the distribution sampled from) for each row."""
        import torch

        if params.temperature <= 0:
            logp = torch.log_softmax(scores, -1)
            tok = scores.argmax(-1)
            return tok, logp.gather(1, tok[:, None]).squeeze(1)
        k = min(params.top_k or scores.shape[-1], scores.shape[-1])
        vals, idx = (scores / params.temperature).topk(k, dim=-1)
        probs = torch.softmax(vals, -1)
        if params.top_p < 1.0:  # keep the smallest prefix of the sorted tokens whose mass reaches top_p
            probs = probs.masked_fill(probs.cumsum(-1) - probs > params.top_p, 0.0)
            probs = probs / probs.sum(-1, keepdim=True)
        choice = torch.multinomial(probs, 1, generator=gen)
        return idx.gather(1, choice).squeeze(1), probs.gather(1, choice).squeeze(1).log()

    def chat(self, messages: list[dict], params):
        """A reply to chat ``messages`` (:mod:`.chat`: the model's chat template, optionally JSON-schema-constrained)."""
        from .chat import ChatGenerator

        if self._chat is None:
            self._chat = ChatGenerator(self.model, self.tok)
        return self._chat.reply(messages, params)

    def embed(self, texts: list[str]) -> Embeddings:
        """Mean of the last hidden state over real tokens only (padding never enters the mean)."""
        torch = self._torch
        enc = self._encode(texts)
        out = None
        n_tokens = 0
        with torch.inference_mode():
            for rows in self._buckets([len(e) for e in enc], self.batch_tokens * 2):
                ids, mask, pos = self._pad([enc[i] for i in rows])
                # the decoder alone: its last hidden state is the causal LM's, without the unused vocabulary head
                hidden = self.model.base_model(
                    input_ids=ids, attention_mask=mask, position_ids=pos
                ).last_hidden_state.float()
                m = mask.unsqueeze(-1).to(hidden.dtype)
                vec = ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), vec.shape[1]), np.float32)
                out[rows] = vec
                n_tokens += int(mask.sum())
        if out is None:
            out = np.zeros((0, self.model.config.hidden_size), np.float32)
        return Embeddings(out, n_tokens)
