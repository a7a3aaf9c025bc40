"""scFID speed and agreement: c2s_agent.metrics against a naive float64 scipy implementation.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/metrics/bench_scfid.py [--n 10000] [--dim 512]

Embeddings are synthetic (seeded): a low-rank-plus-noise covariance like that of real cell embeddings, with
the generated set shifted and rescaled. The naive reference is ``np.cov`` + ``scipy.linalg.sqrtm`` on the
product of covariances (the textbook FID code). Prints times, the speed ratio and the relative difference.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402


def naive_fid(x: np.ndarray, y: np.ndarray) -> float:
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_x @ s_y)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x) + np.trace(s_y) - 2 * np.trace(covmean))


def embeddings(n: int, dim: int, rank: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).standard_normal((rank, dim)) / np.sqrt(rank)
    return (rng.standard_normal((n, rank)) * scale) @ basis + 0.3 * rng.standard_normal((n, dim)) + shift


def best_of(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main() -> None:
    from c2s_agent.metrics import scfid
    from c2s_agent.metrics.frechet import frechet_distance

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=100)
    args = ap.parse_args()
    print(
        f"scFID benchmark: {args.n:,} real x {args.n:,} generated cells, {args.dim}-dim float32 embeddings, "
        f"{os.cpu_count()} cores"
    )
    x = embeddings(args.n, args.dim, 64, 1).astype(np.float32)
    y = embeddings(args.n, args.dim, 64, 2, shift=0.05, scale=1.1).astype(np.float32)
    t_fast, fast = best_of(lambda: frechet_distance(x, y), args.repeats)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    t_naive, naive = best_of(lambda: naive_fid(x64, y64), 1)
    t_boot, boot = best_of(lambda: scfid(x, y, n_boot=args.n_boot), 1)
    print(f"  c2s_agent frechet_distance : {t_fast:7.3f} s   value {fast:.6f}")
    print(f"  naive np.cov + sqrtm       : {t_naive:7.3f} s   value {naive:.6f}")
    print(f"  speed ratio naive / fast   : {t_naive / t_fast:7.1f}x")
    print(f"  agreement |fast-naive|/naive: {abs(fast - naive) / abs(naive):.2e}")
    print(
        f"  scfid with {args.n_boot} bootstrap resamples: {t_boot:.3f} s, value {boot.value:.4f}, "
        f"95% interval [{boot.low:.4f}, {boot.high:.4f}]"
    )
    print(f"  target: <= 5 s for the point estimate -> {'MET' if t_fast <= 5 else 'MISSED'}")
    # fewer cells than dimensions: the cross-product path against the same naive code
    small_x, small_y = x64[:300], y64[:400]
    t_s, v_s = best_of(lambda: frechet_distance(small_x, small_y), args.repeats)
    t_sn, v_sn = best_of(lambda: naive_fid(small_x, small_y), 1)
    print(
        f"  n < dim (300 x 400 cells, {args.dim} dims): fast {t_s:.3f} s value {v_s:.6f}; naive {t_sn:.3f} s "
        f"value {v_sn:.6f}; ratio {t_sn / t_s:.1f}x; agreement {abs(v_s - v_sn) / abs(v_sn):.2e}"
    )


if __name__ == "__main__":
    main()
