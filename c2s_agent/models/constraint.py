"""Decoding constrained to a list of words (genes, or cell-type labels) for any tokenizer.

A word is one or several tokens (a gene is 2-6 sub-word tokens for an English LLM, one for the embedded
model). :class:`WordTrie` holds the token sequences of the words as they are written in a completion: the first
word after the response's own prefix (``first``: "" or " "), every later one after the separator (" "), the list
closed by the end text ("." ) or the end of text. :class:`WordState` walks one completion through it and says
which tokens may come next: a token that continues the current word, or, once a word is complete, the start of
another word (never one already used, with ``distinct``), the end text, or the end of text. Both the
transformers backend and the vLLM logits processor (``vllm_logits.WordListProcessor``) decode with it, so they
agree token for token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class WordList:
    """What a completion must be: at most ``max_words`` words of ``words`` (each at most once with ``distinct``),
    the first written after ``first``, the others after ``separator``, then ``end`` (may be empty) or the end of
    text."""

    words: tuple[str, ...]
    max_words: int
    first: str = " "
    separator: str = " "
    end: str = "."
    distinct: bool = True


class WordTrie:
    """The token sequences of a WordList's words, as a trie with two roots (node 0: the first word, node 1: the
    later ones) sharing word numbers. Built from token ids, so that an engine without the tokenizer (a vLLM
    logits processor) builds the same trie from :meth:`encode`'s output."""

    def __init__(
        self,
        first: list[list[int]],
        later: list[list[int]],
        end: list[int],
        eos: int,
        max_words: int,
        distinct: bool = True,
    ):
        self.eos, self.max_words, self.distinct = eos, max_words, distinct
        self.children: list[dict[int, int]] = [{}, {}]
        self.word_at: list[int] = [-1, -1]
        self.paths: list[list[int]] = [[] for _ in first]  # nodes of each word, under both roots
        self.later_first = np.zeros(len(first), np.int64)  # each word's first node under the later root
        for root, seqs in ((0, first), (1, later)):
            for w, seq in enumerate(seqs):
                node = root
                for t in seq:
                    node = self.children[node].setdefault(int(t), len(self.word_at))
                    if node == len(self.word_at):
                        self.children.append({})
                        self.word_at.append(-1)
                    self.paths[w].append(node)
                    if root == 1 and len(self.paths[w]) == len(first[w]) + 1:
                        self.later_first[w] = node
                if self.word_at[node] < 0:  # two words with one token sequence: the first keeps it
                    self.word_at[node] = w
        self.longest = (max(map(len, first), default=0), max(map(len, later), default=0))
        self.end_tokens = np.asarray(end[:1], np.int64)  # a one-token end text; longer ones end at its first token
        self.child_tokens = [np.fromiter(c.keys(), np.int64, len(c)) for c in self.children]
        self.child_nodes = [np.fromiter(c.values(), np.int64, len(c)) for c in self.children]
        #: every word is one token, the same after either root: decoding needs no walk, only a token mask
        self.single_token = all(len(p) == 2 for p in self.paths) and self.children[0].keys() == self.children[1].keys()
        self.below = np.zeros(len(self.word_at), np.int32)  # words in each node's subtree
        for path in self.paths:
            self.below[np.unique(path)] += 1

    @classmethod
    def from_json(cls, text: str) -> "WordTrie":
        return cls(**json.loads(text))

    def max_new_tokens(self) -> int:
        """Tokens enough for ``max_words`` of the longest words (the first as written first, the others after the
        separator), the end text and the end of text."""
        return self.longest[0] + (self.max_words - 1) * self.longest[1] + len(self.end_tokens) + 1


def encode(tok, spec: WordList) -> str:
    """A WordList as token ids under ``tok`` (JSON, the arguments of WordTrie): what an engine needs to build
    the trie without the tokenizer."""
    first = tok([spec.first + w for w in spec.words], add_special_tokens=False)["input_ids"]
    later = tok([spec.separator + w for w in spec.words], add_special_tokens=False)["input_ids"]
    end = tok(spec.end, add_special_tokens=False)["input_ids"] if spec.end else []
    return json.dumps(
        {
            "first": first,
            "later": later,
            "end": end,
            "eos": tok.eos_token_id,
            "max_words": spec.max_words,
            "distinct": spec.distinct,
        },
        separators=(",", ":"),
    )


@lru_cache(maxsize=8)
def trie(tok, spec: WordList) -> WordTrie:
    """The (cached) trie of ``spec`` under ``tok``."""
    return WordTrie.from_json(encode(tok, spec))


class WordState:
    """One completion's place in a WordTrie."""

    def __init__(self, trie: WordTrie):
        self.t = trie
        self.node = 0
        self.n_words = 0
        self.ended = False
        self.left = trie.below.copy() if trie.distinct else trie.below  # unused words under each node
        self.used = np.zeros(len(trie.paths), bool)

    def _complete(self) -> bool:
        w = self.t.word_at[self.node]
        return self.node > 1 and w >= 0 and not self.used[w]

    def allowed(self) -> np.ndarray:
        """Token ids that may come next."""
        t = self.t
        if self.ended:
            return np.asarray([t.eos], np.int64)
        nodes = t.child_nodes[self.node]
        out = [t.child_tokens[self.node][self.left[nodes] > 0]]
        if self._complete():
            if self.n_words + 1 < t.max_words:  # the next word: any with an unused word below, this one aside
                this = t.child_nodes[1] == t.later_first[t.word_at[self.node]]
                out.append(t.child_tokens[1][self.left[t.child_nodes[1]] - this * t.distinct > 0])
            out += [t.end_tokens, np.asarray([t.eos], np.int64)]
        allowed = np.unique(np.concatenate(out))
        return allowed if len(allowed) else np.asarray([t.eos], np.int64)

    def advance(self, token: int) -> None:
        """Move on by the token just decoded."""
        t = self.t
        if self.ended:
            return
        child = t.children[self.node].get(token)
        if child is not None and self.left[child] > 0:
            self.node = child
            return
        if self._complete():
            w = t.word_at[self.node]
            self.n_words += 1
            if t.distinct:
                self.used[w] = True
                self.left[np.unique(t.paths[w])] -= 1
        nxt = t.children[1].get(token)
        if nxt is not None and self.n_words < t.max_words:
            self.node = nxt
        else:  # the end text, the end of text, or (unconstrained callers) anything else
            self.ended = True
