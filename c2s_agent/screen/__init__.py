"""Perturbation prediction on chosen cells, gene programs and the resumable dual-context virtual screen."""

from .cells import predict, select_cells
from .programs import GeneProgram, builtin_programs, get_program, programs, rank_scores, score_cells
from .screen import ScreenResult, load_library, model_facts, resolve_contexts, run_screen, trained_on_text

__all__ = [
    "GeneProgram",
    "ScreenResult",
    "builtin_programs",
    "get_program",
    "load_library",
    "model_facts",
    "predict",
    "programs",
    "rank_scores",
    "resolve_contexts",
    "run_screen",
    "score_cells",
    "select_cells",
    "trained_on_text",
]
