"""C2S models: backends (transformers, OpenAI-compatible HTTP, vLLM), prompt sets, the tasks, training and
the model server. Start with :func:`load_model`; scanpy-style functions live in :mod:`c2s_agent.models.tl`."""

from .backend import Backend, Completion, Embeddings, GenParams, LabelScores
from .model import UNKNOWN, C2SModel, embedded_model_path, load_model

__all__ = [
    "UNKNOWN",
    "Backend",
    "C2SModel",
    "Completion",
    "Embeddings",
    "GenParams",
    "LabelScores",
    "embedded_model_path",
    "load_model",
]
