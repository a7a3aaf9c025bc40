"""Chat completions on a transformers model: the model's chat template, greedy or sampled decoding with a KV
cache (kept from one reply to the next: a prompt that starts like the last one, such as a planner's fixed system
prompt, is read only from where it differs), and, given a JSON schema, decoding constrained to JSON that follows it (lm-format-enforcer's token
enforcer: at each step only tokens that keep the text a valid prefix of such JSON are allowed)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..errors import InputError

#: Whitespace the JSON constraint allows between tokens: none (compact JSON; small models pad it with blank lines).
MAX_WHITESPACE = 0


@dataclass(frozen=True)
class ChatParams:
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    schema: dict | None = None  # the reply must be JSON following this schema


@dataclass
class ChatReply:
    text: str
    n_prompt_tokens: int
    n_completion_tokens: int
    finish_reason: str  # "stop" or "length"


def _regular_tokens(tok, vocab_size: int) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) of every non-special token, as lm-format-enforcer's tokenizer data wants it
    (its transformers integration does the same but does not import under transformers 5)."""
    zero = tok.encode("0", add_special_tokens=False)[-1]
    special = set(tok.all_special_ids)
    out = []
    for i in range(vocab_size):
        if i in special:
            continue
        after_zero = tok.decode([zero, i])[1:]
        out.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))
    return out


class ChatGenerator:
    """Chat replies from a causal LM and its tokenizer (one request at a time; the caller serialises)."""

    def __init__(self, model, tok):
        if not getattr(tok, "chat_template", None):
            raise InputError("model", "has no chat template", "serve an instruction-tuned model with a chat template")
        self.model, self.tok = model, tok
        self._last: tuple[list[int], object] | None = None  # the tokens the model has read, and their KV cache

    @functools.cached_property
    def _eos(self) -> set[int]:
        """The tokens that end a reply: the tokenizer's and the generation config's end tokens."""
        ids = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        return {self.tok.eos_token_id, *(ids if isinstance(ids, list) else [ids])} - {None}

    @functools.cached_property
    def _tokenizer_data(self):
        from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

        vocab = self.model.config.vocab_size
        decode = lambda ids: self.tok.decode(ids).rstrip("\ufffd")  # noqa: E731 - half a multi-byte character
        return TokenEnforcerTokenizerData(_regular_tokens(self.tok, vocab), decode, sorted(self._eos), False, vocab)

    def _enforcer(self, schema: dict):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        try:
            parser = JsonSchemaParser(schema)
        except Exception as exc:  # noqa: BLE001 - the library raises plain exceptions on schemas it cannot read
            raise InputError(
                "response_format json_schema", f"cannot be used ({exc})", "send a valid JSON schema"
            ) from None
        enforcer = TokenEnforcer(self._tokenizer_data, parser)
        parser.config.max_consecutive_whitespaces = MAX_WHITESPACE
        parser.config.force_json_field_order = True  # properties in the order of "required": a step's tool first
        return enforcer

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _read(self, ids: list[int]):
        """The model's output after reading ``ids``, continuing the last reply's KV cache over their common
        prefix (cropped to it)."""
        import torch

        start, cache = 0, None
        if self._last is not None:
            prev, cache = self._last
            while start < min(len(prev), len(ids) - 1) and prev[start] == ids[start]:
                start += 1
            extra = cache.get_seq_length() - start
            if start == 0 or not all(layer.is_croppable for layer in cache.layers):
                start, cache = 0, None
            elif extra > 0:
                for layer in cache.layers:
                    layer.crop(-extra)
        self._last = None  # a failure below leaves no half-updated cache behind
        tensor = torch.tensor([ids[start:]], device=self.model.device)
        return self.model(input_ids=tensor, cache=cache, use_cache=True)

    def reply(self, messages: list[dict], params: ChatParams) -> ChatReply:
        import torch

        ids = self.prompt_ids(messages)
        enforcer = self._enforcer(params.schema) if params.schema is not None else None
        gen = torch.Generator().manual_seed(params.seed)
        out: list[int] = []
        finish = "length"
        with torch.inference_mode():
            res, read = self._read(ids), list(ids)
            for _ in range(params.max_tokens):
                logits = res.logits[0, -1].float()
                if enforcer is not None:
                    allowed = enforcer.get_allowed_tokens(ids + out).allowed_tokens
                    mask = torch.full_like(logits, float("-inf"))
                    mask[allowed] = 0
                    logits = logits + mask
                if params.temperature > 0:
                    nxt = int(torch.multinomial(torch.softmax(logits / params.temperature, -1), 1, generator=gen))
                else:
                    nxt = int(logits.argmax())
                if nxt in self._eos:
                    finish = "stop"
                    break
                out.append(nxt)
                res = self.model(
                    input_ids=torch.tensor([[nxt]], device=self.model.device), cache=res.cache, use_cache=True
                )
                read.append(nxt)
            self._last = (read, res.cache)
        return ChatReply(self.tok.decode(out, skip_special_tokens=True), len(ids), len(out), finish)
