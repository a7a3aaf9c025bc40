"""Plots of a generation evaluation (:class:`c2s_agent.metrics.evaluate.EvaluationResult`): metric bars with intervals, and real
vs generated cells on a shared PCA."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def generation_metrics(result) -> Figure:
    """One small panel per metric: the value as a bar, the bootstrap interval as an error bar."""
    names = list(result.metrics)
    fig = Figure(figsize=(2.2 * len(names), 2.8))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        mv = result.metrics[name]
        value = mv.value if np.isfinite(mv.value) else 0.0
        err = None
        if mv.low is not None:
            err = [[max(value - mv.low, 0)], [max(mv.high - value, 0)]]
        ax.bar([0], [value], color="#4c72b0", yerr=err, capsize=6)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=8)
        ax.axhline(0, color="black", lw=0.5)
    fig.suptitle(f"generated vs real ({result.encoder} encoder; bars: 95% bootstrap interval)", fontsize=9)
    fig.tight_layout()
    return fig


def shared_pca(real: np.ndarray, generated: np.ndarray, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both embeddings projected on the top ``n`` principal axes of the pooled cells."""
    pooled = np.vstack([real, generated]).astype(np.float64)
    mu = pooled.mean(0)
    _, _, vt = np.linalg.svd(pooled - mu, full_matrices=False)
    axes = vt[:n].T
    return (real - mu) @ axes, (generated - mu) @ axes


def generation_embedding(result, max_points: int = 5000, seed: int = 0) -> Figure:
    """Real and generated cells on the first two principal axes of their pooled embeddings."""
    rng = np.random.default_rng(seed)
    r, g = result.real_embedding, result.generated_embedding
    r = r[rng.permutation(len(r))[:max_points]]
    g = g[rng.permutation(len(g))[:max_points]]
    pr, pg = shared_pca(r, g)
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.scatter(pr[:, 0], pr[:, 1], s=4, alpha=0.5, color="#7f7f7f", label=f"real ({len(result.real_embedding)})")
    ax.scatter(
        pg[:, 0], pg[:, 1], s=4, alpha=0.5, color="#d62728", label=f"generated ({len(result.generated_embedding)})"
    )
    ax.set_xlabel("shared PC1")
    ax.set_ylabel("shared PC2")
    ax.legend(fontsize=8, markerscale=3)
    ax.set_title(f"real vs generated ({result.encoder} embedding)", fontsize=9)
    fig.tight_layout()
    return fig
