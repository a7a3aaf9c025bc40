"""Cell-sentence transform: the reference `cell2sentence` package vs c2s-agent, side by side in one process.

Run with the reference venv (built by bench/setup_reference.sh):
    $(bash bench/setup_reference.sh) bench/transform/run.py [--ref-cells 10000] [--million]

Prints cells/s of each and the ratio on the bundled datasets and on a synthetic 40,000 x 20,000 count matrix
(~1,400 non-zeros per cell): the ranking kernel alone, ranks plus strings, and the whole user path
(``to_sentences(adata, top_k=200).strings()`` on the AnnData as given, warm: counts are ranked as they are and
only the ranked entries normalised). It checks that non-tied genes come out in the same order, and with
--million streams 1,000,000 x 20,000 cells from a backed .h5ad to top-200 sentences in a child process,
printing wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

WORK = Path(__file__).resolve().parents[1] / "_work"


def synthetic(n_cells: int, n_genes: int = 20_000, nnz: int = 1_500, seed: int = 0) -> sp.csr_matrix:
    """Counts with ~nnz non-zeros per cell, heavy-tailed values (many ties, as in real data)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.poisson(nnz, n_cells), 1, n_genes)
    rows = np.repeat(np.arange(n_cells, dtype=np.int64), lengths)
    weights = rng.dirichlet(np.full(n_genes, 0.3))  # some genes far more often expressed than others
    skewed = np.minimum(np.searchsorted(np.cumsum(weights), rng.random(rows.size)), n_genes - 1)
    cols = np.where(rows % 2 == 0, skewed, rng.integers(0, n_genes, rows.size))
    keys = np.sort(rows * n_genes + cols)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # drop repeated draws; sorted by row, column
    rows, cols = keys // n_genes, (keys % n_genes).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_cells))]).astype(np.int64)
    data = np.floor(rng.lognormal(0.0, 1.1, cols.size)).astype(np.float32) + 1
    return sp.csr_matrix((data, cols, indptr), shape=(n_cells, n_genes))


def reference(adata) -> tuple[list[str], float]:
    from cell2sentence.utils import generate_sentences, generate_vocabulary

    t = time.perf_counter()
    vocab = generate_vocabulary(adata)
    sents = generate_sentences(adata, vocab)
    return sents, time.perf_counter() - t


def ours(adata, top_k: int | None) -> tuple[np.ndarray, float, float]:
    from c2s_agent.sentences.transform import _priority, gene_vocabulary, rank_csr, sentence_strings

    t = time.perf_counter()
    genes, usable = gene_vocabulary(adata.var_names)
    pr, inv = _priority(adata.n_vars, "random", 42, None)
    idx, _ = rank_csr(adata.X, top_k, pr, inv, usable)
    t_rank = time.perf_counter() - t
    sentence_strings(idx, genes)
    return idx, t_rank, time.perf_counter() - t


def same_order(ref_sents, idx, X, var_names, top_k: int | None) -> tuple[int, int]:
    """Cells whose non-tied genes are in identical order: the same value at every position, and the same genes
    wherever the value is not tied with the last kept position (which genes fill a tie cut by K is random)."""
    lookup = {g.upper(): i for i, g in enumerate(var_names)}
    ok = 0
    for i, s in enumerate(ref_sents):
        ref = np.array([lookup[g] for g in s.split()[:top_k]], dtype=np.int64)
        mine = idx[i][idx[i] >= 0]
        row = X[i].toarray().ravel()
        if len(ref) != len(mine) or not np.array_equal(row[ref], row[mine]):
            continue
        inner = row[ref] != row[ref][-1] if top_k else np.ones(len(ref), bool)
        ok += set(ref[inner]) == set(mine[inner]) and set(ref) - set(mine) <= set(np.flatnonzero(row == row[ref][-1]))
    return ok, len(ref_sents)


def compare(name: str, adata, ref_cells: int) -> None:
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    sub = adata[:ref_cells].copy() if adata.n_obs > ref_cells else adata
    ours(adata[:50].copy(), 200)  # warm the JIT cache
    ref_sents, t_ref = reference(sub)
    r_ref = sub.n_obs / t_ref
    print(f"{name}: reference {r_ref:,.0f} cells/s on {sub.n_obs:,} cells (full sentences, cut at K for prompts)")
    for k in (200, None):
        idx, t_rank, t_all = ours(adata, k)
        n_ok, n = same_order(ref_sents, idx[: sub.n_obs], sub.X, adata.var_names, k)
        r_rank, r_all = adata.n_obs / t_rank, adata.n_obs / t_all
        what = f"top-{k}" if k else "all genes"
        print(
            f"  ours {what:<9} ranks {r_rank:>9,.0f} cells/s (x{r_rank / r_ref:,.1f})"
            f" | ranks + strings {r_all:>8,.0f} cells/s (x{r_all / r_ref:,.1f}) | same non-tied order {n_ok}/{n}"
        )
    r_user = adata.n_obs / user_path(adata)
    print(
        f"  ours to_sentences(adata, top_k=200).strings(), from the AnnData as given: {r_user:,.0f} cells/s "
        f"(x{r_user / r_ref:,.1f}; target >= 20x)"
    )


def user_path(adata, repeats: int = 3) -> float:
    """Seconds of the best of ``repeats`` warm runs of to_sentences + strings on ``adata`` (counts as given)."""
    from c2s_agent.sentences import to_sentences

    to_sentences(adata[:100].copy(), top_k=200).strings()  # warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        to_sentences(adata, top_k=200).strings()
        times.append(time.perf_counter() - t)
    return min(times)


def million(n_cells: int = 1_000_000, nnz: int = 1_500) -> None:
    path = WORK / f"synthetic_{n_cells}x20000_{nnz}.h5ad"
    if not path.exists():
        print(f"writing {path} (once) ...", flush=True)
        WORK.mkdir(exist_ok=True)
        chunk = 50_000
        first = synthetic(chunk, nnz=nnz, seed=0)
        a = ad.AnnData(X=first)
        a.var_names = [f"GENE{i}" for i in range(first.shape[1])]
        obs_names = [f"cell{i}" for i in range(n_cells)]
        import h5py
        from anndata.io import sparse_dataset, write_elem

        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            write_elem(f, "X", first)
            X = sparse_dataset(f["X"])
            pool = [first] + [synthetic(chunk, nnz=nnz, seed=s) for s in range(1, 4)]  # cells repeat: fine for I/O
            for start in range(chunk, n_cells, chunk):
                X.append(pool[(start // chunk) % len(pool)])
            import pandas as pd

            write_elem(f, "obs", pd.DataFrame(index=pd.Index(obs_names)))
            write_elem(f, "var", pd.DataFrame(index=a.var_names))
            for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                write_elem(f, key, {})
            f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        tmp.rename(path)
    out = WORK / "million_top200.h5ad"
    code = (
        "from c2s_agent.sentences.io import write_sentences as w; import sys; "
        f"s = w({str(path)!r}, {str(out)!r}, top_k=200, backed=True, chunk_size=20000); "
        "print(s['seconds'], [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t
    if proc.returncode:
        print(proc.stderr[-2000:])
        return
    peak = int(proc.stdout.split()[-1]) / 1024**2  # the child's own high-water mark (VmHWM, in kB)
    print(
        f"1,000,000 x 20,000 backed -> top-200: {wall:,.0f} s wall ({n_cells / wall:,.0f} cells/s incl. start-up), "
        f"peak RSS {peak:.2f} GiB (targets: <= 180 s, <= 2 GiB)"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ref-cells", type=int, default=10_000, help="cells given to the (slow) reference")
    p.add_argument("--million", action="store_true", help="also run the 1M-cell backed streaming test")
    args = p.parse_args()
    from c2s_agent.data import prepare, read

    print(f"threads: numba {os.environ.get('NUMBA_NUM_THREADS', 'all')} of {os.cpu_count()} cores")
    for name in ("kang2018", "pbmc68k"):
        compare(name, prepare(read(name)), args.ref_cells)
    a = ad.AnnData(X=synthetic(40_000))
    a.var_names = [f"GENE{i}" for i in range(a.n_vars)]
    compare("synthetic 40k x 20k", a, args.ref_cells)
    if args.million:
        million()


if __name__ == "__main__":
    main()
