"""Generated cells against the real cells of a dataset: every metric of :mod:`c2s_agent.metrics`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import anndata as ad

from ..conventions.slots import GENERATED_CONDITION, GENERATED_TYPE, GENERATION_METRICS
from ..metrics import EvaluationResult, evaluate_generation
from ..metrics.inputs import select


@dataclass
class GenerationMetrics:
    """The metrics (:class:`c2s_agent.metrics.EvaluationResult`) and the obs values that selected the real cells
    (None: every cell)."""

    result: EvaluationResult
    real: dict[str, str] | None


def _matching(adata, generated) -> dict[str, str] | None:
    """The obs values of ``adata`` equal to the generated cells' one requested type (and condition), each from the
    first categorical column that holds it."""
    where = {}
    for key in (GENERATED_TYPE, GENERATED_CONDITION):
        if key not in generated.obs or generated.obs[key].nunique() != 1:
            continue
        value = str(generated.obs[key].iloc[0])
        for col in adata.obs.columns:
            if adata.obs[col].dtype.name in ("category", "object") and value in set(adata.obs[col].astype(str)):
                where[col] = value
                break
    return where or None


def generation_metrics(
    adata, generated, real: dict[str, str] | None = None, control: dict[str, str] | None = None, **kwargs
) -> GenerationMetrics:
    """Compare ``generated`` cells (anything :func:`c2s_agent.metrics.evaluate_generation` takes) with the cells of
    ``adata`` whose obs equal ``real`` (default: those matching the generated AnnData's one requested cell type and
    condition, noted in the result, else every cell); ``control`` selects control cells for the fold-change
    metrics; ``kwargs`` go to :func:`~c2s_agent.metrics.evaluate_generation` (``adata`` is the reference).
    Writes ``uns["c2s_generation_metrics"]`` (the JSON of :meth:`EvaluationResult.to_dict`)."""
    notes = []
    if real is None and isinstance(generated, ad.AnnData):
        real = _matching(adata, generated)
        if real:
            notes.append(f"real cells selected to match the generated cells: {real}")
    result = evaluate_generation(
        select(adata, real, "real"),
        generated,
        reference=adata,
        control=select(adata, control, "control") if control else None,
        **kwargs,
    )
    result.notes[:0] = notes
    adata.uns[GENERATION_METRICS] = json.dumps(result.to_dict())
    return GenerationMetrics(result, real)
