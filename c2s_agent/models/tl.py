"""Scanpy-style C2S functions: AnnData in, results in ``obs``/``obsm``/``uns`` (or a new AnnData out).

``model`` is anything :func:`c2s_agent.models.load_model` accepts (None = the embedded model) or a loaded
:class:`C2SModel`.
"""

from __future__ import annotations

import numpy as np

from ..conventions import slots
from ..errors import InputError
from .model import C2SModel, load_model


def _model(model, settings=None) -> C2SModel:
    return model if isinstance(model, C2SModel) else load_model(model, settings)


def annotate(adata, model=None, mode: str = "score", labels: list[str] | None = None, threshold: float | None = None,
             key_added: str = "c2s_cell_type", settings=None, on_call=None):
    """Predict cell types: ``obs[key_added]`` (a known label or "unknown") and ``obs[key_added.replace('cell_type',
    'confidence')]``; per-label probabilities in ``obsm["c2s_label_probs"]`` (score mode); the Cell Ontology id and
    the model's words in ``obs["c2s_cell_ontology_id"]`` / ``obs["c2s_generated_text"]`` (free text: generate mode
    without labels); a summary in ``uns["c2s_annotate"]``. Returns the prediction table."""
    m = _model(model, settings)
    df = m.predict_cell_types(adata, mode=mode, labels=labels, threshold=threshold, on_call=on_call)
    conf_key = key_added.replace("cell_type", "confidence") if "cell_type" in key_added else key_added + "_confidence"
    adata.obs[key_added] = df["label"].to_numpy()
    adata.obs[key_added] = adata.obs[key_added].astype("category")
    adata.obs[conf_key] = df["confidence"].to_numpy().astype(np.float32)
    if "cell_ontology_id" in df:  # free text: the Cell Ontology term the words name, and the words
        adata.obs[slots.PREDICTED_ONTOLOGY_ID] = df["cell_ontology_id"].to_numpy()
        adata.obs[slots.PREDICTED_TEXT] = df["generated_text"].to_numpy()
    probs = [c for c in df.columns if c.startswith("p_")]
    if probs:
        import pandas as pd

        adata.obsm["c2s_label_probs"] = pd.DataFrame(df[probs].to_numpy(np.float32), index=adata.obs_names,
                                                     columns=[c[2:] for c in probs])
    adata.uns["c2s_annotate"] = {"model": m.name, "mode": mode, "threshold": float(threshold if threshold is not None
                                                                                  else m.confidence_threshold),
                                 "n_unknown": int((df["label"] == "unknown").sum()),
                                 "counts": {str(k): int(v) for k, v in df["label"].value_counts().items()}}
    return df


def embed(adata, model=None, key_added: str = "X_c2s", settings=None, on_call=None) -> np.ndarray:
    """Cell embeddings into ``obsm[key_added]`` (mean last hidden state over real tokens)."""
    m = _model(model, settings)
    X = m.embed(adata, on_call=on_call)
    adata.obsm[key_added] = X
    adata.uns["c2s_embed"] = {"model": m.name, "dim": int(X.shape[1])}
    return X


def _reverse(m: C2SModel):
    from pathlib import Path

    from ..sentences import ReverseTransform

    path = getattr(m.backend, "path", None)
    if path is not None and (Path(path) / "reverse_transform.json").exists():
        return ReverseTransform.load(Path(path) / "reverse_transform.json")
    if "reverse_transform" in m.meta:
        return ReverseTransform.model_validate(m.meta["reverse_transform"])
    return None


def _to_adata(m: C2SModel, sentences: list[str], obs: dict, genes=None, reverse=None):
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
        out = ad.AnnData(X=sp.csr_matrix((len(sentences), len(genes)), dtype=np.float32),
                         obs=pd.DataFrame(index=names), var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    out.obs["c2s_sentence"] = sentences
    for k, v in obs.items():
        out.obs[k] = pd.Categorical(v) if isinstance(v[0], str) else v
    return out


def generate_cells(cell_type: str | list[str], n: int = 1, condition: str | list[str] | None = None, model=None,
                   n_genes: int | None = None, seed: int = 0, guidance: float | None = None, settings=None,
                   on_call=None, genes: list[str] | None = None):
    """Generate ``n`` cells of ``cell_type`` (and ``condition``) as an AnnData: sentences in
    ``obs["c2s_sentence"]``, expression reconstructed from rank in ``X`` (log1p CP10k), unknown and repeated
    gene names counted in ``obs["c2s_n_unknown"]`` / ``obs["c2s_n_duplicated"]``. ``guidance`` and ``genes`` (the
    vocabulary, for a model without one): see :meth:`C2SModel.generate`."""
    m = _model(model, settings)
    if n < 1:
        raise InputError("n", f"must be >= 1 (got {n})", "ask for at least one cell")
    types = [cell_type] * n if isinstance(cell_type, str) else list(cell_type)
    conds = None if condition is None else ([condition] * len(types) if isinstance(condition, str) else list(condition))
    sentences = m.generate(types, conds, n_genes=n_genes, seed=seed, guidance=guidance, genes=genes, on_call=on_call)
    obs = {"c2s_cell_type": types}
    if conds is not None or m.known_conditions:
        obs["c2s_condition"] = conds or [m.known_conditions[0]] * len(types)
    out = _to_adata(m, sentences, obs, genes=None if m.genes or genes is None else list(dict.fromkeys(genes)))
    out.uns["c2s_generate"] = {"model": m.name, "seed": seed}
    return out


def perturb(adata, perturbation: str, context: str | None = None, model=None, seed: int = 0, settings=None,
            on_call=None):
    """Predict each cell's response to ``perturbation``: an AnnData (one row per input cell) with the perturbed
    sentences in ``obs["c2s_sentence"]`` and expression reconstructed from rank."""
    m = _model(model, settings)
    sentences = m.perturb(adata, perturbation, context=context, seed=seed, on_call=on_call)
    obs = {"c2s_perturbation": [perturbation] * len(sentences), "c2s_source_cell": list(map(str, adata.obs_names))}
    for col in ("cell_type", "c2s_cell_type"):
        if col in adata.obs:
            obs[col] = adata.obs[col].astype(str).tolist()
    out = _to_adata(m, sentences, obs)
    out.obs_names = [f"{c}_{perturbation}" for c in adata.obs_names.astype(str)]
    out.uns["c2s_perturb"] = {"model": m.name, "perturbation": perturbation, "context": context, "seed": seed}
    return out
