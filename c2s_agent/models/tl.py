"""Scanpy-style C2S functions: AnnData in, results in ``obs``/``obsm``/``uns`` (or a new AnnData out).

``model`` is anything :func:`c2s_agent.models.load_model` accepts (None = the embedded model) or a loaded
:class:`C2SModel`.

``annotate``, ``embed`` and ``perturb`` also take a path or a backed AnnData with ``out=`` (an .h5ad path):
the cells are then streamed from disk in chunks of ``chunk_size``, resumably, on the ``local`` or ``ray``
executor (see :mod:`c2s_agent.models.stream`), the results are written to ``out`` and a
:class:`~c2s_agent.models.stream.StreamResult` is returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import find_columns
from ..conventions.slots import (
    ANNOTATION,
    CELL_TYPE,
    EMBEDDING,
    GENERATED_CONDITION,
    GENERATED_TYPE,
    LABEL_PROBS,
    PERTURBATION,
    PREDICTED_ONTOLOGY_ID,
    PREDICTED_TEXT,
    PREDICTED_TYPE,
    SENTENCE,
    SOURCE_CELL,
)
from ..errors import InputError
from .model import C2SModel, load_model
from .stream import DEFAULT_CHUNK, stream


def get_model(model, settings=None) -> C2SModel:
    """A loaded C2SModel: ``model`` itself, or what :func:`load_model` loads for it (None: the embedded model)."""
    return model if isinstance(model, C2SModel) else load_model(model, settings)


def _streamed(adata, out) -> bool:
    """Whether ``adata`` is to be streamed from disk (a path or a backed AnnData), which needs ``out``."""
    if not (isinstance(adata, (str, Path)) or getattr(adata, "isbacked", False)):
        return False
    if out is None:
        raise InputError("out", "is needed to stream cells from disk", "pass out='result.h5ad'")
    return True


def annotate(
    adata,
    model=None,
    mode: str = "score",
    labels: list[str] | None = None,
    threshold: float | None = None,
    key_added: str = PREDICTED_TYPE,
    settings=None,
    on_call=None,
    out=None,
    chunk_size: int = DEFAULT_CHUNK,
    executor: str = "local",
):
    """Predict cell types: ``obs[key_added]`` (a known label or "unknown") and ``obs[key_added.replace('cell_type',
    'confidence')]``; per-label probabilities in ``obsm["c2s_label_probs"]`` (score mode); the Cell Ontology id and
    the model's words in ``obs["c2s_cell_ontology_id"]`` / ``obs["c2s_generated_text"]`` (free text: generate mode
    without labels); a summary in ``uns["c2s_annotate"]``. Returns the prediction table (streamed: the
    StreamResult)."""
    if _streamed(adata, out):
        return stream(
            "annotate",
            adata,
            out,
            model,
            settings,
            chunk_size,
            executor=executor,
            on_call=on_call,
            mode=mode,
            labels=labels,
            threshold=threshold,
            key_added=key_added,
        )
    m = get_model(model, settings)
    df = m.predict_cell_types(adata, mode=mode, labels=labels, threshold=threshold, on_call=on_call)
    conf_key = key_added.replace(CELL_TYPE, "confidence") if CELL_TYPE in key_added else key_added + "_confidence"
    adata.obs[key_added] = df["label"].to_numpy()
    adata.obs[key_added] = adata.obs[key_added].astype("category")
    adata.obs[conf_key] = df["confidence"].to_numpy().astype(np.float32)
    if "cell_ontology_id" in df:  # free text: the Cell Ontology term the words name, and the words
        adata.obs[PREDICTED_ONTOLOGY_ID] = df["cell_ontology_id"].to_numpy()
        adata.obs[PREDICTED_TEXT] = df["generated_text"].to_numpy()
    probs = [c for c in df.columns if c.startswith("p_")]
    if probs:
        import pandas as pd

        adata.obsm[LABEL_PROBS] = pd.DataFrame(
            df[probs].to_numpy(np.float32), index=adata.obs_names, columns=[c[2:] for c in probs]
        )
    adata.uns[ANNOTATION] = {
        "model": m.name,
        "mode": mode,
        "threshold": float(threshold if threshold is not None else m.confidence_threshold),
        "n_unknown": int((df["label"] == "unknown").sum()),
        "counts": {str(k): int(v) for k, v in df["label"].value_counts().items()},
    }
    return df


def embed(
    adata,
    model=None,
    key_added: str = EMBEDDING,
    settings=None,
    on_call=None,
    out=None,
    chunk_size: int = DEFAULT_CHUNK,
    executor: str = "local",
):
    """Cell embeddings into ``obsm[key_added]`` (mean last hidden state over real tokens); returns them
    (streamed: the StreamResult)."""
    if _streamed(adata, out):
        return stream(
            "embed", adata, out, model, settings, chunk_size, executor=executor, on_call=on_call, key_added=key_added
        )
    m = get_model(model, settings)
    X = m.embed(adata, on_call=on_call)
    adata.obsm[key_added] = X
    adata.uns["c2s_embed"] = {"model": m.name, "dim": int(X.shape[1])}
    return X


def _reverse(m: C2SModel):
    from ..sentences import ReverseTransform

    path = getattr(m.backend, "path", None)
    if path is not None and (Path(path) / "reverse_transform.json").exists():
        return ReverseTransform.load(Path(path) / "reverse_transform.json")
    if "reverse_transform" in m.meta:
        return ReverseTransform.model_validate(m.meta["reverse_transform"])
    return None


def from_sentences(m: C2SModel, sentences: list[str], obs: dict, genes=None, reverse=None):
    """An AnnData of generated sentences (``obs["c2s_sentence"]``) with expression reconstructed from rank."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    reverse = reverse or _reverse(m)
    if genes is None:
        genes = m.genes or sorted({g for s in sentences for g in s.split()})
    names = [f"gen_{i}" for i in range(len(sentences))]
    if reverse is not None:
        out = reverse.reconstruct(sentences, genes=genes, obs_names=names)
    else:  # no fit known: ranks only, expression left empty
        out = ad.AnnData(
            X=sp.csr_matrix((len(sentences), len(genes)), dtype=np.float32),
            obs=pd.DataFrame(index=names),
            var=pd.DataFrame(index=pd.Index(genes, dtype=str)),
        )
    out.obs[SENTENCE] = sentences
    for k, v in obs.items():
        out.obs[k] = pd.Categorical(v) if isinstance(v[0], str) else v
    return out


def generate_cells(
    cell_type: str | list[str],
    n: int = 1,
    condition: str | list[str] | None = None,
    model=None,
    n_genes: int | None = None,
    seed: int = 0,
    guidance: float | None = None,
    settings=None,
    on_call=None,
    genes: list[str] | None = None,
):
    """Generate ``n`` cells of ``cell_type`` (and ``condition``) as an AnnData: sentences in
    ``obs["c2s_sentence"]``, expression reconstructed from rank in ``X`` (log1p CP10k), unknown and repeated
    gene names counted in ``obs["c2s_n_unknown"]`` / ``obs["c2s_n_duplicated"]``. ``guidance`` and ``genes`` (the
    vocabulary, for a model without one): see :meth:`C2SModel.generate`."""
    m = get_model(model, settings)
    if n < 1:
        raise InputError("n", f"must be >= 1 (got {n})", "ask for at least one cell")
    types = [cell_type] * n if isinstance(cell_type, str) else list(cell_type)
    conds = None if condition is None else ([condition] * len(types) if isinstance(condition, str) else list(condition))
    sentences = m.generate(types, conds, n_genes=n_genes, seed=seed, guidance=guidance, genes=genes, on_call=on_call)
    obs = {GENERATED_TYPE: types}
    if conds is not None or m.known_conditions:
        obs[GENERATED_CONDITION] = conds or [m.known_conditions[0]] * len(types)
    out = from_sentences(m, sentences, obs, genes=None if m.genes or genes is None else list(dict.fromkeys(genes)))
    out.uns["c2s_generate"] = {"model": m.name, "seed": seed}
    return out


def perturb(
    adata,
    perturbation: str,
    context: str | None = None,
    model=None,
    seed: int = 0,
    settings=None,
    on_call=None,
    out=None,
    chunk_size: int = DEFAULT_CHUNK,
    executor: str = "local",
):
    """Predict each cell's response to ``perturbation``: an AnnData (one row per input cell) with the perturbed
    sentences in ``obs["c2s_sentence"]`` and expression reconstructed from rank (streamed: written to ``out``,
    the StreamResult returned)."""
    if _streamed(adata, out):
        return stream(
            "perturb",
            adata,
            out,
            model,
            settings,
            chunk_size,
            executor=executor,
            on_call=on_call,
            perturbation=perturbation,
            context=context,
            seed=seed,
        )
    m = get_model(model, settings)
    sentences = m.perturb(adata, perturbation, context=context, seed=seed, on_call=on_call)
    obs = {PERTURBATION: [perturbation] * len(sentences), SOURCE_CELL: list(map(str, adata.obs_names))}
    obs.update({col: adata.obs[col].astype(str).tolist() for col in type_columns(adata.obs)})
    result = from_sentences(m, sentences, obs)
    result.obs_names = [f"{c}_{perturbation}" for c in adata.obs_names.astype(str)]
    result.uns["c2s_perturb"] = {"model": m.name, "perturbation": perturbation, "context": context, "seed": seed}
    return result


def type_columns(obs) -> list[str]:
    """The obs columns of known and predicted cell types, which perturbed cells carry over."""
    roles = find_columns(obs)
    return sorted({roles.cell_type, roles.predicted} - {None})
