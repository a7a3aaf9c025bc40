"""Neighbourhood graphs, UMAP and label separation on an embedding in ``obsm`` (e.g. C2S embeddings)."""

from __future__ import annotations

import numpy as np

from ..conventions.slots import EMBEDDING, EMBEDDING_UMAP, SIMILARITY
from ..errors import InputError


def umap(adata, use_rep: str = EMBEDDING, key_added: str = EMBEDDING_UMAP, n_neighbors: int = 15, seed: int = 0):
    """UMAP of ``obsm[use_rep]`` (scanpy's neighbours and UMAP on that representation) into ``obsm[key_added]``;
    returns it. Needs at least 10 cells."""
    import anndata as ad
    import scanpy as sc

    if use_rep not in adata.obsm:
        raise InputError(f"use_rep {use_rep!r}", "is not in obsm", "embed the cells first (c2s_agent.embed)")
    if adata.n_obs < 10:
        raise InputError("cells", f"are {adata.n_obs}; a UMAP needs at least 10", "use more cells")
    tmp = ad.AnnData(obsm={"rep": np.asarray(adata.obsm[use_rep], dtype=np.float32)})
    tmp.obs_names = adata.obs_names
    sc.pp.neighbors(tmp, use_rep="rep", n_neighbors=min(n_neighbors, adata.n_obs - 1))
    sc.tl.umap(tmp, random_state=seed)
    adata.obsm[key_added] = tmp.obsm["X_umap"]
    return adata.obsm[key_added]


def silhouette(adata, groupby: str, use_rep: str = EMBEDDING) -> float | None:
    """Silhouette (cosine) of the groups of ``obs[groupby]`` in ``obsm[use_rep]``; None when there are fewer than
    two groups or every cell is its own group."""
    from sklearn.metrics import silhouette_score

    labels = adata.obs[groupby].astype(str).to_numpy()
    if not 1 < len(set(labels)) < len(labels):
        return None
    return float(silhouette_score(np.asarray(adata.obsm[use_rep]), labels, metric="cosine"))


def similar_cells(
    adata,
    reference: list[str],
    groupby: str | None = None,
    use_rep: str = EMBEDDING,
    n: int = 50,
    key_added: str = SIMILARITY,
):
    """The ``n`` cells most similar to a reference group: cosine similarity of every cell to the centroid of the
    cells whose ``obs[groupby]`` is in ``reference`` (the column holding those labels when ``groupby`` is None), in
    ``obsm[use_rep]``. Writes ``obs[key_added]``; returns (the column used, the reference mask, the table of the
    nearest cells outside the reference with their similarity and labels)."""
    import pandas as pd

    from ..screen.cells import cell_type_key

    if use_rep not in adata.obsm:
        raise InputError(f"use_rep {use_rep!r}", "is not in obsm", "embed the cells first (c2s_agent.embed)")
    groupby = groupby or cell_type_key(adata, None, reference[0])
    ref = adata.obs[groupby].astype(str).isin(reference).to_numpy()
    if not ref.any():
        raise InputError(
            f"reference {reference}",
            f"matches no cell of obs[{groupby!r}]",
            f"use some of {sorted(set(adata.obs[groupby].astype(str)))[:20]}",
        )
    X = np.asarray(adata.obsm[use_rep], dtype=np.float32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    centre = X[ref].mean(0)
    sim = X @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    adata.obs[key_added] = sim
    order = [i for i in np.argsort(-sim) if not ref[i]][:n]
    table = pd.DataFrame(
        {
            "cell": adata.obs_names[order],
            "similarity": sim[order],
            groupby: adata.obs[groupby].astype(str).to_numpy()[order],
        }
    ).set_index("cell")
    return groupby, ref, table
