"""Model tasks on ``.h5ad`` files of any size: ``annotate``, ``embed`` and ``perturb`` read a backed file in
chunks of cells, run the model on each chunk and commit its results to a store beside the output
(:class:`~c2s_agent.models.chunk_store.ChunkStore`, ``OUT.h5ad.c2s-chunks.sqlite``) as they finish; then the
output file is written from the store, chunk by chunk, and the store removed.

Memory is bounded by the chunk size: a chunk's rows are read from disk, ranked and prompted, and nothing of
the matrix is kept (``obs`` and the per-cell results of ``annotate`` are held whole, a few bytes per cell).
A killed run (even kill -9) resumes from its store: run the same command again; finished chunks are neither
redone nor lost, and a chunk is never stored twice. Each chunk's cells are ranked with the model's tie order,
independent of the other cells, so labels and embeddings equal those of the in-memory path on the same cells
(probabilities and vectors to float rounding: batches differ); perturbed cells are samples, drawn per chunk
from seeds ``seed + first cell of the chunk``.

Chunks run one after another in this process (``executor="local"``) or as tasks on a Ray cluster
(``executor="ray"``, :func:`c2s_agent.jobs.run_jobs`; workers read the input file at the same path), with the
same torch thread count, so both give identical rows. With the ``vllm`` backend the ray executor keeps chunks
in the driver and sends their model calls through Ray Data's LLM processor (backend ``ray-vllm``: one vLLM
engine per GPU of the cluster).
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import ensure_room, estimated_size, write
from ..errors import C2SError, InputError, ModelError
from .chunk_store import ChunkStore, pack
from .model import C2SModel, load_model

TASKS = ("annotate", "embed", "perturb")
STORE_SUFFIX = ".c2s-chunks.sqlite"
DEFAULT_CHUNK = 10_000


@dataclass
class StreamResult:
    """What a streamed run did: ``n_resumed`` chunks were already in the store, ``n_run`` were computed now."""

    task: str
    out: Path
    n_cells: int
    n_chunks: int
    n_resumed: int
    n_run: int
    seconds: float
    cells_run: int
    summary: dict = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)

    @property
    def cells_per_s(self) -> float:
        """Cells computed per second in this run (chunks resumed from the store not counted)."""
        return self.cells_run / self.seconds if self.seconds else 0.0


@dataclass
class ChunkWork:
    """What a worker needs to run any chunk: the input matrix, the gene table, the model and the task."""

    task: str
    options: dict
    path: str
    source: str
    var: object
    model: object  # a loaded C2SModel (local executor) or what load_model takes (Ray workers)
    settings: object
    threads: int


def store_path(out: str | Path) -> Path:
    """Where the results store of a run writing ``out`` lives."""
    return Path(f"{out}{STORE_SUFFIX}")


def stream(
    task: str,
    inp,
    out: str | Path,
    model=None,
    settings=None,
    chunk_size: int = DEFAULT_CHUNK,
    source: str = "auto",
    executor: str = "local",
    threads: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    on_call=None,
    **options,
) -> StreamResult:
    """Run ``task`` ("annotate", "embed" or "perturb") over the cells of ``inp`` (a path, a bundled dataset name
    or a backed AnnData) chunk by chunk, writing ``out`` (.h5ad). ``options`` go to the task: ``mode``,
    ``labels``, ``threshold``, ``key_added`` (annotate), ``key_added`` (embed), ``perturbation``, ``context``,
    ``seed`` (perturb). ``threads``: torch threads per chunk (default: the settings', one per core locally, 1 on
    Ray). Progress with an ETA goes to stderr; ``on_call`` (a run ledger's recorder) gets one model call per
    chunk."""
    from ..config import Settings
    from ..jobs import EXECUTORS, ray_cluster

    if task not in TASKS:
        raise InputError(f"task {task!r}", "cannot be streamed", f"use one of {list(TASKS)}")
    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r}", "is not an executor", f"use one of {list(EXECUTORS)}")
    if chunk_size < 1:
        raise InputError("chunk_size", f"must be >= 1 (got {chunk_size})", "pass a number of cells, e.g. 10000")
    out = _out_path(out)
    settings = settings or Settings()
    threads = threads or settings.threads or (1 if executor == "ray" else os.cpu_count() or 1)
    with ray_cluster(address, num_cpus) if executor == "ray" else _nothing():  # vLLM engines need the cluster
        return _stream(
            task, inp, out, model, settings, chunk_size, source, executor, threads, progress, on_call, options
        )


def _stream(
    task,
    inp,
    out: Path,
    model,
    settings,
    chunk_size: int,
    source: str,
    executor: str,
    threads: int,
    progress: bool,
    on_call,
    options: dict,
) -> StreamResult:
    from ..jobs import run_jobs

    path, src, var, obs, n_obs = _open_input(inp, source, task != "perturb")
    llm = executor == "ray" and settings.backend == "vllm"
    m = (
        model
        if isinstance(model, C2SModel)
        else load_model(model, settings.model_copy(update={"backend": "ray-vllm"}) if llm else settings)
    )
    options = _task_options(task, m, options)
    spec = {
        "format": "c2s-stream/1",
        "task": task,
        "options": options,
        "source": src,
        "chunk_size": chunk_size,
        "input": _file_id(path),
        "n_obs": n_obs,
        "model": _model_id(m, settings),
    }
    with _writing(out):
        store = ChunkStore(store_path(out), spec)
    bounds = [(i, a, min(a + chunk_size, n_obs)) for i, a in enumerate(range(0, n_obs, chunk_size))]
    done = store.done()
    todo = [b for b in bounds if b[0] not in done]
    remote = executor == "ray" and not llm
    work = ChunkWork(task, options, str(path), src, var, _model_ref(m, settings) if remote else m, settings, threads)
    bar = Progress(task, n_obs, sum(b - a for i, a, b in bounds if i in done), len(done), len(bounds), progress)
    workers: set[str] = set()
    t0 = time.perf_counter()
    try:
        with _writing(out):
            for j, result in run_jobs(
                run_chunk, [(work, a, b) for _, a, b in todo], "ray" if remote else "local", threads
            ):
                i, a, b = todo[j]
                if isinstance(result, Exception):
                    raise ModelError(
                        f"chunk {i} (cells {a}-{b})",
                        f"failed on a Ray worker ({type(result).__name__}: {str(result)[:300]})",
                        "run the same command again: finished chunks are kept",
                    )
                store.write(i, a, b, *result)
                workers.add(result[2])
                bar.advance(b - a)
                if on_call is not None:
                    on_call(
                        "model",
                        task=task,
                        model=m.name,
                        backend=m.backend.name,
                        n_inputs=b - a,
                        seconds=round(result[1], 4),
                        worker=result[2],
                    )
            seconds = time.perf_counter() - t0
            summary = _write_output(task, store, path, out, obs, m, options)
    finally:
        bar.close()
        store.close()
    store.remove()
    return StreamResult(
        task,
        out,
        n_obs,
        len(bounds),
        len(done),
        len(todo),
        seconds,
        sum(b - a for _, a, b in todo),
        summary,
        sorted(workers),
    )


def run_chunk(work: ChunkWork, start: int, stop: int) -> tuple[bytes, float, str]:
    """Run the task on cells ``start:stop`` in this process: (packed arrays, seconds, worker)."""
    import torch

    torch.set_num_threads(max(1, work.threads))
    t0 = time.perf_counter()
    m = work.model if isinstance(work.model, C2SModel) else load_model(work.model, work.settings)
    cells = _read_rows(work.path, work.source, start, stop, work.var)
    arrays = _RUN[work.task](m, cells, work.options)
    return pack(arrays), time.perf_counter() - t0, f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------------- the tasks
def _annotate(m: C2SModel, cells, opts: dict) -> dict:
    df = m.predict_cell_types(cells, mode=opts["mode"], labels=opts["labels"], threshold=opts["threshold"])
    probs = [c for c in df.columns if c.startswith("p_")]
    out = {"label": df["label"].to_numpy(str), "confidence": df["confidence"].to_numpy(np.float32)}
    if probs:
        out["probs"] = df[probs].to_numpy(np.float32)
    return out


def _embed(m: C2SModel, cells, opts: dict) -> dict:
    return {"X": np.asarray(m.embed(cells), dtype=np.float32)}


def _perturb(m: C2SModel, cells, opts: dict) -> dict:
    # each chunk samples from its own seeds (seed + first cell: one seed per batch, never another chunk's)
    first = int(cells.obs_names[0])
    sentences = m.perturb(cells, opts["perturbation"], context=opts["context"], seed=opts["seed"] + first)
    return {"sentence": np.asarray(sentences, dtype=str)}


_RUN = {"annotate": _annotate, "embed": _embed, "perturb": _perturb}


def _task_options(task: str, m: C2SModel, options: dict) -> dict:
    """The task's options with their defaults filled in and checked once, before any chunk runs."""
    from ..conventions import slots

    known = {
        "annotate": {"mode": "score", "labels": None, "threshold": None, "key_added": slots.PREDICTED_TYPE},
        "embed": {"key_added": slots.EMBEDDING},
        "perturb": {"perturbation": None, "context": None, "seed": 0},
    }[task]
    bad = sorted(set(options) - set(known))
    if bad:
        raise InputError(f"options {bad}", f"are not options of {task}", f"use {sorted(known)}")
    opts = {**known, **{k: v for k, v in options.items() if v is not None}}
    if task == "annotate":
        if opts["mode"] not in ("score", "generate"):
            raise InputError("mode", f"{opts['mode']!r} is not a prediction mode", "use 'score' or 'generate'")
        opts["labels"] = m._candidate_labels(opts["labels"])
        opts["threshold"] = m.confidence_threshold if opts["threshold"] is None else float(opts["threshold"])
    if task == "perturb":
        if not opts["perturbation"]:
            raise InputError("perturbation", "is needed", f"name one, e.g. {m.known_perturbations[:3]}")
        m._check_known("perturbation", [opts["perturbation"]], m.known_perturbations)
    return opts


# ------------------------------------------------------------------------------------------------- input
def _open_input(inp, source: str, copied: bool):
    """(path, matrix source, gene table, obs, number of cells) of a backed input, checked once. ``copied``: the
    output will be a copy of the file with slots added, which needs the current .h5ad layout."""
    from ..data import read
    from ..data.io import resolve

    path = Path(inp.filename) if hasattr(inp, "isbacked") and inp.isbacked else None
    if hasattr(inp, "obs_names") and path is None:
        raise InputError(
            "cells", "are an in-memory AnnData", "stream a path or a backed AnnData (read(path, backed=True))"
        )
    adata = read(path or inp, backed=True)
    try:
        m = resolve(adata, source)
        var = m.var.copy()  # the chunks' own resolve() maps Ensembl ids to symbols as the whole file's did
        obs = adata.obs.copy()
        path = Path(adata.filename).resolve()
    finally:
        adata.file.close()
    _check_file(path, m.report.source, copied)
    return path, m.report.source, var, obs, len(obs)


def _node(f, source: str):
    """The matrix ``source`` of an open .h5ad (``raw.X``: files written by anndata before 0.7)."""
    if source == "raw":
        return f["raw/X"] if "raw" in f else f["raw.X"]
    return f["X"] if source == "X" else f[f"layers/{source}"]


def _check_file(path: Path, source: str, copied: bool) -> None:
    """Refused up front: a file in the layout of anndata < 0.8 when the output is its copy, and empty cells
    (as the in-memory path refuses them, read from a sparse matrix's indptr)."""
    import h5py

    with h5py.File(path, "r") as f:
        if copied and f.attrs.get("encoding-type") != "anndata":
            raise InputError(
                path,
                "is in the layout of anndata < 0.8, which streamed outputs cannot extend",
                "re-save it once: anndata.read_h5ad(path, backed='r').write_h5ad(new_path)",
            )
        node = _node(f, source)
        if not isinstance(node, h5py.Group) or "csr" not in str(
            node.attrs.get("encoding-type", node.attrs.get("h5sparse_format"))
        ):
            return
        empty = int((np.diff(node["indptr"][:]) == 0).sum())
    if empty:
        raise InputError(
            source,
            f"{empty} cells have no expressed genes",
            "filter them (sc.pp.filter_cells(adata, min_genes=1)) before streaming",
        )


_FILES: dict[str, object] = {}


def _read_rows(path: str, source: str, start: int, stop: int, var):
    """Cells ``start:stop`` of the input as an in-memory AnnData (the matrix as stored; the file stays open in
    this process for the next chunk)."""
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset

    if path not in _FILES:
        _FILES[path] = h5py.File(path, "r")
    node = _node(_FILES[path], source)
    block = sparse_dataset(node)[start:stop] if isinstance(node, h5py.Group) else node[start:stop]
    return ad.AnnData(X=block, obs=pd.DataFrame(index=pd.RangeIndex(start, stop).astype(str)), var=var)


# ------------------------------------------------------------------------------------------------- output
def _write_output(task: str, store: ChunkStore, path: Path, out: Path, obs, m: C2SModel, opts: dict) -> dict:
    """Write ``out`` from the store (to a temporary file renamed at the end, so ``out`` is never half-written)."""
    import shutil

    tmp = out.with_name(f"{out.stem}.partial.h5ad")
    if task == "perturb":
        summary = _write_perturbed(store, tmp, obs, m, opts)
    else:
        shutil.copyfile(path, tmp)
        summary = (_write_annotation if task == "annotate" else _write_embedding)(store, tmp, obs, m, opts)
    os.replace(tmp, out)
    return summary


def _write_annotation(store: ChunkStore, tmp: Path, obs, m: C2SModel, opts: dict) -> dict:
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    from ..conventions import slots
    from ..models.model import UNKNOWN

    labels = list(opts["labels"])
    categories = labels + [UNKNOWN] if UNKNOWN not in labels else labels
    codes, conf, probs = [], [], []
    for _, _, _, arrays in store.chunks():
        codes.append(pd.Categorical(arrays["label"], categories=categories).codes)
        conf.append(arrays["confidence"])
        if "probs" in arrays:
            probs.append(arrays["probs"])
    key = opts["key_added"]
    conf_key = key.replace(slots.CELL_TYPE, "confidence") if slots.CELL_TYPE in key else key + "_confidence"
    obs = obs.copy()
    obs[key] = pd.Categorical.from_codes(np.concatenate(codes), categories=categories).remove_unused_categories()
    obs[conf_key] = np.concatenate(conf)
    counts = obs[key].value_counts()
    summary = {
        "model": m.name,
        "mode": opts["mode"],
        "threshold": float(opts["threshold"]),
        "n_unknown": int(counts.get(UNKNOWN, 0)),
        "counts": {str(k): int(v) for k, v in counts.items() if v},
    }
    ensure_room(tmp, estimated_size(obs) + sum(p.nbytes for p in probs))
    with h5py.File(tmp, "r+") as f:
        del f["obs"]
        write_elem(f, "obs", obs)
        if probs:
            write_elem(
                f.require_group("obsm"),
                slots.LABEL_PROBS,
                pd.DataFrame(np.concatenate(probs), index=obs.index, columns=labels),
            )
        write_elem(f.require_group("uns"), slots.ANNOTATION, summary)
    return {**summary, "mean_confidence": float(obs[conf_key].mean())}


def _write_embedding(store: ChunkStore, tmp: Path, obs, m: C2SModel, opts: dict) -> dict:
    import h5py
    from anndata.io import write_elem

    with h5py.File(tmp, "r+") as f:
        obsm = f.require_group("obsm")
        if opts["key_added"] in obsm:
            del obsm[opts["key_added"]]
        dset = None
        for _, start, stop, arrays in store.chunks():
            X = arrays["X"]
            if dset is None:
                ensure_room(tmp, len(obs) * X.shape[1] * 4)
                dset = obsm.create_dataset(
                    opts["key_added"],
                    shape=(len(obs), X.shape[1]),
                    dtype="f4",
                    chunks=(min(len(obs), 4096), X.shape[1]),
                )
                dset.attrs["encoding-type"], dset.attrs["encoding-version"] = "array", "0.2.0"
            dset[start:stop] = X
        summary = {"model": m.name, "dim": int(dset.shape[1])}
        write_elem(f.require_group("uns"), "c2s_embed", summary)
    return summary


def _write_perturbed(store: ChunkStore, tmp: Path, obs, m: C2SModel, opts: dict) -> dict:
    """One output cell per input cell (as :func:`c2s_agent.models.tl.perturb`), chunk by chunk as small files
    joined on disk by anndata's ``concat_on_disk``."""
    import shutil

    from anndata.experimental import concat_on_disk

    from ..conventions import slots
    from .tl import _reverse, from_sentences, type_columns

    reverse, genes = _reverse(m), m.genes
    parts = Path(f"{tmp}.parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()
    files = []
    cell_types = type_columns(obs)
    for i, start, stop, arrays in store.chunks():
        sentences = arrays["sentence"].tolist()
        names = obs.index[start:stop].astype(str)
        cols = {slots.PERTURBATION: [opts["perturbation"]] * len(sentences), slots.SOURCE_CELL: list(names)}
        cols.update({c: obs[c].iloc[start:stop].astype(str).tolist() for c in cell_types})
        part = from_sentences(m, sentences, cols, genes=genes or None, reverse=reverse)
        part.obs_names = [f"{c}_{opts['perturbation']}" for c in names]
        files.append(parts / f"{i:07d}.h5ad")
        write(part, files[-1])
    concat_on_disk([str(p) for p in files], tmp)
    shutil.rmtree(parts)
    summary = {"model": m.name, "perturbation": opts["perturbation"], "context": opts["context"], "seed": opts["seed"]}
    _write_uns(tmp, "c2s_perturb", summary)
    return summary


def _write_uns(path: Path, key: str, value: dict) -> None:
    import h5py
    from anndata.io import write_elem

    with h5py.File(path, "r+") as f:
        uns = f.require_group("uns")
        if "encoding-type" not in uns.attrs:  # concat_on_disk leaves the group without anndata's encoding
            uns.attrs["encoding-type"], uns.attrs["encoding-version"] = "dict", "0.1.0"
        write_elem(uns, key, value)


# ------------------------------------------------------------------------------------------------- helpers
def _out_path(out) -> Path:
    out = Path(out)
    if out.suffix != ".h5ad":
        raise InputError(out, "does not end in .h5ad", "name the output file something.h5ad")
    if not out.parent.exists():
        raise InputError(out, "is in a folder that does not exist", f"create {out.parent} first")
    return out


def _file_id(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _model_id(m: C2SModel, settings) -> dict:
    """What identifies the model's results: its name, backend, dtype and the size and time of its files."""
    where = getattr(m.backend, "path", None)
    files = (
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(where).iterdir() if p.is_file())
        if where
        else []
    )
    return {"name": m.name, "backend": m.backend.name, "dtype": settings.dtype, "files": files}


def _model_ref(m: C2SModel, settings) -> str:
    """What a Ray worker passes to load_model to get the same model."""
    where = getattr(m.backend, "path", None)
    if where is None and not str(settings.model).startswith(("http://", "https://")):
        raise InputError(
            "model",
            "was loaded here and cannot be named to Ray workers",
            "pass the model as a directory, 'embedded' or a URL",
        )
    return str(where) if where is not None else settings.model


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _writing:
    """Turns a full disk or a read-only output into one clear error naming the output."""

    def __init__(self, out: Path):
        self.out = out

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, C2SError):
            return False
        text = str(exc).lower()
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text
        readonly = (
            getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)
            or "readonly" in text
            or "read-only" in text
            or "unable to open database" in text
        )
        if isinstance(exc, (OSError, sqlite3.Error)) and (full or readonly):
            problem = "cannot be written: the disk is full" if full else "cannot be written: its folder is read-only"
            raise InputError(
                self.out,
                problem,
                "free space or choose a writable folder, then run the same command again: finished chunks are kept",
            ) from None
        return False


class Progress:
    """Cells done with rate and ETA on stderr: a live line on a terminal, a line per chunk otherwise."""

    def __init__(self, task: str, total: int, done: int, chunks_done: int, n_chunks: int, show: bool):
        self.task, self.total, self.done, self.show = task, total, done, show
        self.start_done, self.t0 = done, time.perf_counter()
        self.live = show and sys.stderr.isatty()
        if show:
            resumed = f"; {chunks_done} of {n_chunks} chunks already done" if chunks_done else ""
            print(f"{task}: {total:,} cells in {n_chunks} chunks{resumed}", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        if not self.show:
            return
        rate = (self.done - self.start_done) / max(1e-9, time.perf_counter() - self.t0)
        eta = (self.total - self.done) / rate if rate else float("inf")
        line = (
            f"{self.task}: {self.done:,}/{self.total:,} cells ({100 * self.done / self.total:.0f}%), "
            f"{rate:,.0f} cells/s, ETA {_clock(eta)}"
        )
        print(("\r" + line) if self.live else line, end="" if self.live else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
