"""The embedded model's word-level tokenizer: one token per gene, label, condition and template word.

Built with the ``tokenizers`` library and saved as a standard Hugging Face fast tokenizer, so any
``AutoTokenizer.from_pretrained`` caller (including the reference package) can load it. Trailing
punctuation is split off words ("is:" -> "is", ":"), gene names are kept whole ("HLA-DRA").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"[^\s]+?(?=[.:;,]?(?:\s|$))|[.:;,]")


def label_token(label: str) -> str:
    """The single token that stands for a cell-type label ("CD14 Mono" -> "CD14_Mono")."""
    return re.sub(r"\s+", "_", str(label).strip())


def template_words(texts: Iterable[str]) -> list[str]:
    """Words of prompt templates (placeholders removed), split the way the tokenizer splits them."""
    words: list[str] = []
    for text in texts:
        for w in _WORD.findall(re.sub(r"\{[a-z_]+\}", " ", text)):
            if w not in words:
                words.append(w)
    return words


def build_tokenizer(genes: Iterable[str], words: Iterable[str]):
    """A PreTrainedTokenizerFast over specials, ``words`` (template words, labels, conditions) and ``genes``."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in [*SPECIALS, *words, *genes]:
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"[.:;,]$"), behavior="isolated"),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
