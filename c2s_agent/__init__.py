"""c2s-agent: ask research questions of single-cell RNA-seq data with Cell2Sentence models.

Scanpy-style API: AnnData in, results in the conventional slots (``obs``, ``obsm``, ``uns``); ``c2s.ask(adata,
question)`` runs the agent from Python. Names are imported on first use, so ``import c2s_agent`` (and every ``c2s``
command) starts without loading numpy, pandas or torch.
"""

from __future__ import annotations

import importlib

from .errors import C2SError, InputError
from .hookspecs import hookimpl

#: Public name -> the module that defines it.
_LAZY = {
    **dict.fromkeys(["inspect", "prepare", "read", "read_demo"], ".data"),
    **dict.fromkeys(["CellSentences", "ReverseTransform", "multicell_text", "to_sentences"], ".sentences"),
    **dict.fromkeys(["annotate", "embed", "generate_cells", "perturb"], ".models.tl"),  # C2S models, scanpy style
    **dict.fromkeys(["Run", "ask", "runs"], ".agent.notebook"),  # the agent from Python and Jupyter
}

__all__ = ["C2SError", "InputError", "hookimpl", "pl", "tl", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in ("tl", "pl"):
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
