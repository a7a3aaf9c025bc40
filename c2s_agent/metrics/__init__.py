"""Evaluating generated cells: encoders, scFID, MMD, energy and Wasserstein distances, fold-change agreement."""

from ._sampling import MetricValue
from .distribution import energy_distance, gene_wasserstein, mmd, sliced_wasserstein
from .encoders import C2SEncoder, Encoder, ReferenceEncoder, get_encoder
from .evaluate import DESCRIPTIONS, METRICS, EvaluationResult, evaluate_generation
from .frechet import frechet_distance, scfid
from .lfc import LfcAgreement, lfc_agreement, mean_expression

__all__ = [
    "DESCRIPTIONS",
    "METRICS",
    "C2SEncoder",
    "Encoder",
    "EvaluationResult",
    "LfcAgreement",
    "MetricValue",
    "ReferenceEncoder",
    "energy_distance",
    "frechet_distance",
    "gene_wasserstein",
    "get_encoder",
    "lfc_agreement",
    "mean_expression",
    "mmd",
    "evaluate_generation",
    "scfid",
    "sliced_wasserstein",
]
