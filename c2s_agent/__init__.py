"""c2s-agent: ask research questions of single-cell RNA-seq data with Cell2Sentence models.

Scanpy-style API: AnnData in, results in the conventional slots (``obs``, ``obsm``, ``uns``).
"""

from __future__ import annotations

from .data import inspect, prepare, read, read_demo
from .errors import C2SError, InputError
from .hookspecs import hookimpl
from .sentences import CellSentences, ReverseTransform, multicell_text, to_sentences
from .models.tl import annotate, embed, generate_cells, perturb  # noqa: E402  (C2S models, scanpy style)

__all__ = ["C2SError", "CellSentences", "InputError", "ReverseTransform", "hookimpl", "inspect", "multicell_text",
           "prepare", "read", "read_demo", "to_sentences"]
__all__ += ["annotate", "embed", "generate_cells", "perturb"]


def __getattr__(name: str):
    """``c2s_agent.tl`` (analysis functions) and ``c2s_agent.pl`` (plots), imported on first use."""
    if name in ("tl", "pl"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'c2s_agent' has no attribute {name!r}")
