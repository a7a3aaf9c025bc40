"""MMD, energy and Wasserstein metrics: speed and agreement with scipy where scipy has the same statistic.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/metrics/bench_distances.py

Data: the bundled Kang 2018 cells (log-normalised), stimulated vs control CD14 monocytes; 1,000 most variable
genes for the per-gene Wasserstein distance, the reference PCA (50 dims) for the rest.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def main() -> None:
    from scipy.stats import energy_distance as scipy_energy
    from scipy.stats import wasserstein_distance

    from c2s_agent.data import prepare, read
    from c2s_agent.metrics import ReferenceEncoder, energy_distance, gene_wasserstein, mmd, sliced_wasserstein

    kang = prepare(read("kang2018"))
    mono = kang[kang.obs.cell_type == "CD14 Mono"]
    stim, ctrl = mono[mono.obs.condition == "stim"], mono[mono.obs.condition == "ctrl"]
    X = kang.X.toarray()
    genes = np.argsort(-X.var(0))[:1000]
    a, b = stim.X.toarray()[:, genes].astype(np.float64), ctrl.X.toarray()[:, genes].astype(np.float64)
    print(f"{len(a)} stimulated vs {len(b)} control CD14 monocytes, {a.shape[1]} genes")
    t_ours, ours = timed(lambda: gene_wasserstein(a, b, n_boot=0).value)
    t_ref, ref = timed(lambda: float(np.mean([wasserstein_distance(a[:, j], b[:, j]) for j in range(a.shape[1])])))
    print(
        f"  per-gene W1: ours {t_ours:.3f} s, scipy loop {t_ref:.3f} s, ratio {t_ref / t_ours:.1f}x, "
        f"agreement {abs(ours - ref) / ref:.1e}"
    )
    t_ours, ours = timed(lambda: np.array([energy_distance(a[:, [j]], b[:, [j]], n_boot=0).value for j in range(20)]))
    ref = np.array([scipy_energy(a[:, j], b[:, j]) ** 2 for j in range(20)])
    print(
        f"  energy distance, 20 genes one at a time (ours = scipy^2): max relative difference "
        f"{np.max(np.abs(ours - ref) / np.maximum(ref, 1e-12)):.1e}"
    )
    enc = ReferenceEncoder().fit(kang)
    ea, eb = enc.encode(stim), enc.encode(ctrl)
    for name, fn in (
        ("mmd", mmd),
        ("energy", energy_distance),
        ("sliced_wasserstein", sliced_wasserstein),
        ("gene_wasserstein", None),
    ):
        x, y = (a, b) if fn is None else (ea, eb)
        fn = fn or gene_wasserstein
        t0, v0 = timed(lambda fn=fn, x=x, y=y: fn(x, y, n_boot=0))
        t1, v1 = timed(lambda fn=fn, x=x, y=y: fn(x, y, n_boot=100))
        print(
            f"  {name:18s} {v0.value:9.4g}  point {t0:6.3f} s, with 100 bootstrap resamples {t1:6.3f} s "
            f"-> [{v1.low:.4g}, {v1.high:.4g}]"
        )
    big_x = np.random.default_rng(0).standard_normal((2000, 50))
    big_y = np.random.default_rng(1).standard_normal((2000, 50)) + 0.05
    t_m, _ = timed(lambda: mmd(big_x, big_y, n_boot=100))
    print(f"  mmd at the default cap (2,000 x 2,000 cells, 50 dims) with 100 resamples: {t_m:.2f} s")


if __name__ == "__main__":
    main()
