"""Parse gene sentences written by people or models into known gene indices, counting what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_SPLIT = re.compile(r"[\s,;]+")
MAX_CHARS = 200_000


@dataclass
class ParsedSentence:
    """Known gene indices in order (first occurrence kept), with counts of unknown and repeated names."""

    idx: np.ndarray
    n_unknown: int
    n_duplicated: int
    unknown: list[str]


def parse_genes(text: str, lookup: dict[str, int], max_genes: int | None = None) -> ParsedSentence:
    """Split ``text`` into gene names (upper-cased, trailing period dropped) and map them through ``lookup``.

    Text that is not a gene list yields an empty sentence with every token counted unknown; very long
    text is cut at ``MAX_CHARS`` characters, so endless model output never hangs a caller.
    """
    tokens = [t for t in _SPLIT.split(str(text)[:MAX_CHARS].strip().rstrip(".").upper()) if t]
    seen: set[int] = set()
    idx, unknown, dup = [], [], 0
    for tok in tokens:
        tok = tok.strip(".")
        g = lookup.get(tok)
        if g is None:
            unknown.append(tok)
        elif g in seen:
            dup += 1
        else:
            seen.add(g)
            idx.append(g)
            if max_genes is not None and len(idx) >= max_genes:
                break
    return ParsedSentence(np.asarray(idx, dtype=np.int32), len(unknown), dup, unknown[:20])
