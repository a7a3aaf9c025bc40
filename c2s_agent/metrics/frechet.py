"""scFID: the Frechet distance between Gaussians fitted to embeddings of real and generated cells.

``FD = ||mu_r - mu_g||^2 + Tr(S_r) + Tr(S_g) - 2 Tr((S_r S_g)^(1/2))``, computed in float64.

The trace of the matrix square root needs no ``sqrtm``: the eigenvalues of ``S_r S_g`` are those of the
symmetric PSD matrix ``S_r^(1/2) S_g S_r^(1/2)``, so ``Tr((S_r S_g)^(1/2))`` is the sum of the square roots of
its eigenvalues (``eigh``; rounding negatives clipped to 0). When a set has no more cells than dimensions the
covariances are singular; then the same trace is computed exactly, without regularisation, as the nuclear
norm (sum of singular values) of the cross product ``A B^T`` of the centred, scaled data (``S_r = A^T A``,
``S_g = B^T B``), an (n_r x n_g) matrix. That path is also the more accurate one there: singular values carry
rounding of order eps * sigma_max, whereas square roots of a null space's rounded eigenvalues (``sqrtm`` or
``eigh``) add about sqrt(eps * lambda_max) per null dimension. FD itself is biased upwards at small n (more
so when n is near or below the dimension): compare values at equal cell numbers, and read them beside the
bootstrap interval and a real-vs-real baseline.

The interval is a bootstrap percentile interval re-centred on the estimate (see :func:`._sampling.interval`):
resampled sets hold duplicated cells, which inflate FD. The bootstrap resamples cells with replacement; to
keep a replicate at O(G d^2 + d^3) instead of O(n d^2), cells are dealt at random into G blocks whose sums and
cross-products are kept, and blocks are resampled: G = n (the plain cell bootstrap) whenever the blocks'
cross-products fit in ~64 MB, else G >= 32 blocks. With no more cells than dimensions, cells are resampled
directly.
"""

from __future__ import annotations

import numpy as np

from ._sampling import MetricValue, bootstrap_counts, canonical, check_pair, interval

_BLOCK_BYTES = 64 * 2**20
_CONTROLLER = None


def _one_blas_thread():
    """Context limiting BLAS to one thread: for d^3 steps on d <= ~1000 extra threads only contend (26x
    slower was seen on 2 busy cores). The library scan is done once."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray, fast: bool = False) -> float:
    """``Tr((A B)^(1/2))`` for symmetric PSD ``A``, ``B``: sum of sqrt eigenvalues of ``A^(1/2) B A^(1/2)``.

    ``fast=True`` uses a Cholesky factor ``A = L L^T`` (same eigenvalues of ``L^T B L``) and falls back to the
    eigen-decomposition when ``A`` is not numerically positive definite.
    """
    root = None
    if fast:
        try:
            root = np.linalg.cholesky(cov_a)
        except np.linalg.LinAlgError:
            root = None
    if root is None:
        root = _sqrt_psd(cov_a)
    m = root.T @ cov_b @ root
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def _trace_sqrt_cross(xc: np.ndarray, yc: np.ndarray) -> float:
    cross = (xc @ yc.T) / np.sqrt((len(xc) - 1) * (len(yc) - 1))
    return float(np.linalg.svd(cross, compute_uv=False).sum())


def _fd(mu_x, cov_x, mu_y, cov_y, fast=False) -> float:
    fd = float(
        ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y) - 2 * trace_sqrt_product(cov_x, cov_y, fast)
    )
    return max(fd, 0.0)


def _use_cross(n: int, m: int, d: int) -> bool:
    return min(n, m) <= d


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``x`` and ``y`` (n_cells x dims each)."""
    x, y = check_pair(x, y)
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc, yc = x - mu_x, y - mu_y
    n, m, d = len(x), len(y), x.shape[1]
    tr_x, tr_y = float((xc * xc).sum() / (n - 1)), float((yc * yc).sum() / (m - 1))
    if _use_cross(n, m, d):
        tr_sqrt = _trace_sqrt_cross(xc, yc)
    else:
        cov_x, cov_y = xc.T @ xc / (n - 1), yc.T @ yc / (m - 1)
        with _one_blas_thread():
            tr_sqrt = trace_sqrt_product(cov_x, cov_y)
    return max(float(((mu_x - mu_y) ** 2).sum() + tr_x + tr_y - 2 * tr_sqrt), 0.0)


class _Blocks:
    """Cells dealt at random into blocks, keeping each block's size, sum and cross-product (about the mean)."""

    def __init__(self, x: np.ndarray, rng: np.random.Generator):
        n, d = x.shape
        self.mu = x.mean(0)
        xc = x - self.mu
        n_blocks = int(min(n, max(32, _BLOCK_BYTES // (8 * d * d))))
        labels = rng.permutation(n) % n_blocks
        order = np.argsort(labels, kind="stable")
        self.sizes = np.bincount(labels, minlength=n_blocks).astype(np.float64)
        bounds = np.concatenate([[0], np.cumsum(self.sizes).astype(np.int64)])
        self.sums = np.empty((n_blocks, d))
        self.cross = np.empty((n_blocks, d, d))
        for g in range(n_blocks):
            block = xc[order[bounds[g] : bounds[g + 1]]]
            self.sums[g] = block.sum(0)
            self.cross[g] = block.T @ block

    def resample(self, counts: np.ndarray):
        """(mean, covariance) of each resample; ``counts`` is (n_boot, n_blocks). Yields one at a time."""
        d = self.sums.shape[1]
        flat = self.cross.reshape(len(self.sizes), d * d)
        step = max(1, _BLOCK_BYTES // (8 * d * d))
        for start in range(0, len(counts), step):
            chunk = counts[start : start + step]
            crosses = (chunk @ flat).reshape(len(chunk), d, d)
            for w, cross in zip(chunk, crosses):
                n = float(w @ self.sizes)
                shift = (w @ self.sums) / n
                yield self.mu + shift, (cross - n * np.outer(shift, shift)) / (n - 1)


def scfid(x, y, n_boot: int = 100, seed: int = 0, level: float = 0.95) -> MetricValue:
    """scFID of real embeddings ``x`` and generated ``y`` with a bootstrap percentile interval (``n_boot`` resamples)."""
    x, y = check_pair(x, y)
    x, y = canonical(x), canonical(y)
    value = frechet_distance(x, y)
    low = high = None
    if n_boot:
        rng = np.random.default_rng(seed)
        reps = np.empty(n_boot)
        if _use_cross(len(x), len(y), x.shape[1]):
            for b in range(n_boot):
                reps[b] = frechet_distance(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
        else:
            bx, by = _Blocks(x, rng), _Blocks(y, rng)
            cx, cy = bootstrap_counts(len(bx.sizes), n_boot, rng), bootstrap_counts(len(by.sizes), n_boot, rng)
            with _one_blas_thread():
                for b, ((mu_x, cov_x), (mu_y, cov_y)) in enumerate(zip(bx.resample(cx), by.resample(cy))):
                    reps[b] = _fd(mu_x, cov_x, mu_y, cov_y, fast=True)
        low, high = interval(reps, value, level, floor=0.0)
    return MetricValue(value, low, high, len(x), len(y))
