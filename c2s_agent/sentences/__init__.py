"""Cell sentences: the forward transform, the reverse transform, and multi-cell text."""

from .multicell import multicell_text
from .reverse import ReverseTransform
from .transform import CellSentences, from_adata, gene_vocabulary, stream_sentences, to_sentences

__all__ = [
    "CellSentences",
    "ReverseTransform",
    "from_adata",
    "gene_vocabulary",
    "multicell_text",
    "stream_sentences",
    "to_sentences",
]
