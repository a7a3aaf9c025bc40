"""Analysis functions (scanpy's ``tl``): AnnData in, results in the conventional slots and returned. The C2S
model tasks come from :mod:`c2s_agent.models.tl`; the rest compose the library's science for the tools and
for use without the agent."""

from ..knowledge.multicell import MulticellSummary, multicell, multicell_summary
from ..models.tl import annotate, embed, from_sentences, generate_cells, get_model, perturb
from ..screen import run_screen
from .annotation import agreement
from .captions import Caption, caption_groups
from .communication import Communication, ligand_receptor
from .describe import Description, describe
from .embedding import silhouette, similar_cells, umap
from .generation import GenerationMetrics, generation_metrics
from .markers import marker_genes
from .perturbation import PerturbationResponse, choose_cells, perturbation_response
from .programs import ProgramScores, score_program
from .reverse import ReverseFit, reverse_fit

__all__ = [
    "Caption",
    "Communication",
    "Description",
    "GenerationMetrics",
    "MulticellSummary",
    "PerturbationResponse",
    "ProgramScores",
    "ReverseFit",
    "agreement",
    "annotate",
    "caption_groups",
    "choose_cells",
    "describe",
    "embed",
    "from_sentences",
    "generate_cells",
    "generation_metrics",
    "get_model",
    "ligand_receptor",
    "marker_genes",
    "multicell",
    "multicell_summary",
    "perturb",
    "perturbation_response",
    "reverse_fit",
    "run_screen",
    "score_program",
    "silhouette",
    "similar_cells",
    "umap",
]
