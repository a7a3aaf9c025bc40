"""A user's words -> a dataset's label values, by meaning (the Cell Ontology's is-a) and by morphology.

"monocytes" names "CD14+ Monocytes" and "FCGR3A+ Monocytes"; "T cells" every T-cell label; "Tregs"
"CD4+/CD25 T Reg"; "stimulated" "stim"; "control" "ctrl".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .columns import control_value
from .ontology import GENERIC, is_a, is_class_name, key, lookup, singular, words

#: A user's words for the control arm of an experiment ("unstimulated", "untreated", "baseline"): they name a
#: condition column's control value whatever it is called.
CONTROL_WORDS = re.compile(
    r"(?:un|non[- ]?|not[- ]|no |without )(?:stim\w*|treat\w*|perturb\w*|expos\w*|infect\w*)|baseline|mock|vehicle",
    re.I,
)
#: Words for the treated arm ("treated", "IFN-treated", "exposed"): they name a condition column's one value
#: besides its control, whatever it is called.
TREATED_WORDS = re.compile(r"(?:[a-z0-9\-]+-)?(?:treated|exposed|perturbed|infected|challenged)", re.I)
#: Words that never name a label on their own.
STOP = frozenset(
    "a an the of in on at to for from by with and or vs versus than between among each every all any "
    "this that these those their its which what how who is are be do does did my our your me us it "
    "they them there here not no only also both per".split()
)


def _one_slip(a: str, b: str) -> bool:
    """A typing slip between two words of five letters or more: one letter swapped with the next ("crpyt") or
    one letter replaced ("mononcyte" is not one: lengths differ)."""
    if len(a) != len(b) or len(a) < 5 or not (a.isalpha() and b.isalpha()):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return len(diff) == 1 or (
        len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    )


def _same_word(word: str, label_word: str, lower_label: bool = False) -> bool:
    """Equal, or one abbreviates the other ("mono"/"monocyte", "stim"/"stimulated"); a lower-case label word may
    also be a contraction of the user's word ("ctrl"/"control", "dbl"/"doublet")."""
    if word == label_word or _one_slip(word, label_word):
        return True
    short, long_ = sorted((word, label_word), key=len)
    if len(short) >= 4 and short.isalpha() and long_.startswith(short) and len(long_) - len(short) <= 7:
        return True
    if (
        lower_label
        and label_word == short
        and 3 <= len(short) <= 5
        and short.isalpha()
        and len(long_) >= len(short) + 2
        and short[0] == long_[0]
        and short not in long_
    ):
        it = iter(long_)
        return all(ch in it for ch in short)  # letters in order: "ctrl" in "control"
    return False


def _label_words(value: str) -> list[tuple[str, bool]]:
    """The words of a label, each with whether it was written in lower case (an abbreviation such as "ctrl")."""
    return [(w, raw.islower()) for raw in re.split(r"[\s_/]+", value) if raw for w in words(raw)]


def _contained(phrase: list[str], label: list[tuple[str, bool]]) -> bool:
    return all(any(_same_word(p, w, low) for w, low in label) for p in phrase)


def match_labels(phrase: str, values: Iterable[str]) -> list[str]:
    """The values ``phrase`` names: the value itself; a condition's control value for words such as "untreated";
    else values whose Cell Ontology term is the phrase's term
    or a descendant of it; and values holding every content word of the phrase (abbreviations allowed)."""
    values = [str(v) for v in values]
    if CONTROL_WORDS.fullmatch(phrase.strip()):
        control = control_value(values)
        return [control] if control is not None and lookup(control) is None else []  # not "CD4 Naive T"
    if TREATED_WORDS.fullmatch(phrase.strip()):
        control = control_value(values)
        treated = [v for v in values if v != control]
        return treated if control is not None and len(treated) == 1 and lookup(treated[0]) is None else []
    exact = [
        v
        for v in values
        if key(v) == key(phrase) or " ".join(words(v)) == " ".join(words(phrase)) or _code(v) == _code(phrase) != "-"
    ]
    if exact and not any(is_class_name(v) for v in exact):
        return exact  # "CD4 Naive T cells" is that label; "B cells" is every B-cell label
    content = [w for w in words(phrase) if w not in GENERIC and w not in STOP]
    if not content:
        return []
    term = lookup(phrase, strict=True)
    out = list(exact)
    for v in values:
        label = _label_words(v)
        by_meaning = term is not None and (t := lookup(v)) is not None and is_a(t, term)
        if (by_meaning or _contained(content, label)) and v not in out:
            out.append(v)
    if not out and term is not None:  # "CD8 cytotoxic T cells", "conventional DCs": the label the phrase qualifies
        ws = words(phrase)
        said = set(ws) | {"".join(w[0] for w in ws[i:j]) for i in range(len(ws)) for j in range(i + 2, i + 4)}
        out = [v for v in values if (t := lookup(v)) is not None and is_a(term, t) and set(key(v).split()) <= said]
    return _most_specific(content, out)


def _code(text: str) -> str:
    """A code of letters and digits without its separators ("HCC-827", "hcc 827" -> "hcc827"); "-" for words."""
    joined = re.sub(r"[\s_.-]+", "", text.lower())
    return joined if re.fullmatch(r"[a-z]+\d+[a-z\d]*", joined) else "-"


def _most_specific(content: list[str], values: list[str]) -> list[str]:
    """Of several values, those sharing the most telling (longer than one letter) words with the phrase: "memory
    CD4 T cells" names the memory CD4 label, not every CD4 T-cell label; "T cells" keeps them all."""
    telling = [w for w in content if len(w) > 1]
    if len(values) < 2 or not telling:
        return values
    shared = {v: sum(any(_same_word(p, w, low) for w, low in _label_words(v)) for p in telling) for v in values}
    best = max(shared.values())
    return [v for v in values if shared[v] == best]


@dataclass(frozen=True)
class LabelMention:
    """Where a question names label values: the span, its text and the values it names (of one column)."""

    start: int
    end: int
    text: str
    column: str
    values: tuple[str, ...]


_TOKEN = re.compile(r"(?<!['’])[A-Za-z0-9][A-Za-z0-9+/]*-?")


def find_label_mentions(text: str, columns: dict[str, list[str]], max_words: int = 5) -> list[LabelMention]:
    """Non-overlapping spans of ``text`` that name values of ``columns`` (longest spans first, then by column
    order). A one- or two-letter word counts only as written in capitals before "cell(s)" or as a whole value
    ("B cells", "NK"), so that "a" or "to" never name a label."""
    toks = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    found: list[LabelMention] = []
    taken = [False] * len(toks)
    for n in range(min(max_words, len(toks)), 0, -1):
        for i in range(len(toks) - n + 1):
            if any(taken[i : i + n]):
                continue
            span = toks[i : i + n]
            phrase = text[span[0][0] : span[-1][1]]
            if any(re.search(r"[,;:]", text[a[1] : b[0]]) for a, b in zip(span, span[1:])):
                continue  # a label is never split by punctuation: "naive CD4, memory CD4" are two
            if not _plausible(phrase, toks, i + n):
                continue
            for col, vals in columns.items():
                hit = match_labels(phrase, vals)
                if hit:
                    found.append(LabelMention(span[0][0], span[-1][1], phrase, col, tuple(hit)))
                    taken[i : i + n] = [True] * n
                    break
    for lm in list(found):  # "classical and non-classical monocytes": a word sharing the next label's noun
        first, _, head = lm.text.partition(" ")
        before = re.search(r"(?<![\w-])([A-Za-z][\w+-]*)\s*(?:,|\band\b|\bor\b|&)\s*$", text[: lm.start])
        if not head or before is None or singular(before.group(1).lower()) in STOP:
            continue
        i = next((k for k, t in enumerate(toks) if t[0] == before.start(1)), None)
        hit = match_labels(f"{before.group(1)} {head}", columns[lm.column]) if i is not None and not taken[i] else []
        if hit and set(hit) != set(lm.values):
            taken[i] = True
            found.append(LabelMention(before.start(1), before.end(1), before.group(1), lm.column, tuple(hit)))
    for i, (start, _, tok) in enumerate(toks):  # "ctrl/stim", "B/NK": labels joined by a slash
        if not taken[i] and "/" in tok.strip("/"):
            at = start
            for part in tok.split("/"):
                sub = find_label_mentions(part, columns, 1) if part else []
                found += [LabelMention(at + m.start, at + m.end, m.text, m.column, m.values) for m in sub]
                at += len(part) + 1
    return sorted(found, key=lambda m: m.start)


def _plausible(phrase: str, toks, after: int) -> bool:
    """Whether a span could name a label: it has a content word, does not end in a stop word, and short
    capitals ("B", "NK", "DC") stand before "cell(s)" or alone in capitals."""
    if CONTROL_WORDS.fullmatch(phrase):
        return True  # "no stimulation": a stop word that names the control arm
    ws = phrase.split()
    if any(singular(w) in STOP or (w.isdigit() and len(ws) > 1) for w in ws) or singular(ws[0]) in GENERIC:
        return False
    content = [w for w in ws if singular(w.strip("+-/")) not in GENERIC and singular(w) not in STOP]
    if not content or all(w.strip("+-/").isdigit() for w in content):  # numbers name clusters only after "cluster"
        return False
    if all(len(w.strip("+-/")) <= 2 for w in content):
        nxt = toks[after][2].lower() if after < len(toks) else ""
        cell_word = nxt.startswith("cell") or any(w.lower().startswith("cell") for w in ws)
        return all(w.isupper() for w in content) and (cell_word or len(content[0].strip("+-/")) == 2)
    return True
