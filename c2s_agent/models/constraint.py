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
    """The token sequences of a WordList's words under a tokenizer, as a trie with two roots (the first word and
    the later ones) sharing word numbers."""

    def __init__(self, tok, spec: WordList, eos: int):
        self.spec, self.eos = spec, eos
        self.children: list[dict[int, int]] = [{}, {}]  # node 0: first word's root, node 1: later words' root
        self.word_at: list[int] = [-1, -1]
        self.paths: list[list[int]] = [[] for _ in spec.words]  # nodes of each word, both roots
        for root, lead in ((0, spec.first), (1, spec.separator)):
            seqs = tok([lead + w for w in spec.words], add_special_tokens=False)["input_ids"]
            for w, seq in enumerate(seqs):
                node = root
                for t in seq:
                    node = self.children[node].setdefault(t, len(self.word_at))
                    if node == len(self.word_at):
                        self.children.append({})
                        self.word_at.append(-1)
                    self.paths[w].append(node)
                if self.word_at[node] < 0:  # two words with one token sequence: the first keeps it
                    self.word_at[node] = w
        end = tok(spec.end, add_special_tokens=False)["input_ids"] if spec.end else []
        self.end_tokens = np.asarray(end[:1], np.int64)  # a one-token end text; longer ones end at its first token
        self.child_tokens = [np.fromiter(c.keys(), np.int64, len(c)) for c in self.children]
        self.child_nodes = [np.fromiter(c.values(), np.int64, len(c)) for c in self.children]
        #: every word is one token, the same after either root: decoding needs no walk, only a token mask
        self.single_token = all(len(p) == 2 for p in self.paths) and self.children[0].keys() == self.children[1].keys()
        self.below = np.zeros(len(self.word_at), np.int32)  # words in each node's subtree
        for path in self.paths:
            self.below[np.unique(path)] += 1

    def max_new_tokens(self) -> int:
        """Tokens enough for ``max_words`` of the longest word, the end text and the end of text."""
        longest = max((len(self.paths[w]) for w in range(len(self.paths))), default=0)
        return self.spec.max_words * longest + len(self.end_tokens) + 1


@lru_cache(maxsize=8)
def _cached(tok, spec: WordList, eos: int) -> WordTrie:
    return WordTrie(tok, spec, eos)


def trie(tok, spec: WordList) -> WordTrie:
    """The (cached) trie of ``spec`` under ``tok``."""
    return _cached(tok, spec, tok.eos_token_id)


class WordState:
    """One completion's place in a WordTrie."""

    def __init__(self, trie: WordTrie):
        self.t = trie
        self.node = 0
        self.n_words = 0
        self.ended = False
        self.left = trie.below.copy() if trie.spec.distinct else trie.below  # unused words under each node
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
            if self.n_words + 1 < t.spec.max_words:
                out.append(t.child_tokens[1][self.left[t.child_nodes[1]] > 0])
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
            if t.spec.distinct:
                self.used[w] = True
                self.left[np.unique(t.paths[w])] -= 1
        nxt = t.children[1].get(token)
        if nxt is not None and self.n_words < t.spec.max_words:
            self.node = nxt
        else:  # the end text, the end of text, or (unconstrained callers) anything else
            self.ended = True
