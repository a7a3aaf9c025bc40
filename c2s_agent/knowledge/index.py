"""Build, check and load the knowledge index under ``Settings.cache_dir / "knowledge"``.

The index is the record store (all records, exact lookup) plus a FAISS index over the semantic records
(exact inner product up to ``flat_max`` vectors, HNSW beyond), with a ``manifest.json`` naming the sources,
their files and checksums, the embedding model and library versions. It is rebuilt when a source file, the
set of sources, the model or the format changes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .records import Record

FORMAT = 1
FLAT_MAX = 50_000
_LOADED: dict[str, object] = {}


@dataclass
class Source:
    """A knowledge source: a loader (``loader(path=None)`` yields records) and the files it reads."""

    name: str
    loader: Callable[..., Iterable[Record]]
    files: list[Path] = field(default_factory=list)
    plugin: str = "c2s_builtins.knowledge_plugin"


def index_dir(settings) -> Path:
    return Path(settings.cache_dir) / "knowledge"


def registered_sources(settings=None) -> dict[str, Source]:
    """Knowledge sources registered by plugins (``register_knowledge_sources``)."""
    from .. import registry

    out = {}
    for name, reg in registry.knowledge_sources(settings).items():
        out[name] = Source(name, reg.loader, [Path(p) for p in reg.files], reg.plugin)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_entry(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path)}


def _versions() -> dict:
    out = {}
    for pkg in ("c2s-agent", "faiss-cpu", "sentence-transformers", "torch", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def read_manifest(settings) -> dict | None:
    path = index_dir(settings) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def stale_reasons(settings, sources: dict[str, Source] | None = None) -> list[str]:
    """Why the saved index cannot be used as it is (empty list: it is up to date)."""
    from .embed import model_info

    manifest = read_manifest(settings)
    if manifest is None:
        return ["no index built yet"]
    if manifest.get("format") != FORMAT:
        return [f"index format {manifest.get('format')} != {FORMAT}"]
    if manifest.get("model") != model_info():
        return ["embedding model or its settings changed"]
    sources = registered_sources(settings) if sources is None else sources
    if set(sources) != set(manifest["sources"]):
        return [f"sources changed: {sorted(set(sources) ^ set(manifest['sources']))}"]
    reasons, touched = [], False
    for name, entry in {**manifest["sources"], "gene_info": manifest["gene_info"]}.items():
        for f in entry["files"]:
            p = Path(f["path"])
            if not p.exists():
                reasons.append(f"{name}: {p} is missing")
                continue
            st = p.stat()
            if st.st_size == f["bytes"] and st.st_mtime_ns == f["mtime_ns"]:
                continue
            if st.st_size != f["bytes"] or _sha256(p) != f["sha256"]:
                reasons.append(f"{name}: {p.name} changed")
            else:  # same content, new mtime (a fresh clone): remember the new mtime
                f["mtime_ns"], touched = st.st_mtime_ns, True
    if touched and not reasons:
        (index_dir(settings) / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return reasons


def _load_sources(sources: dict[str, Source], paths: dict[str, Path], progress: bool) -> tuple[list[Record], dict]:
    """Every source's records (a user's files replacing the bundled ones where given) and what each gave."""
    from rich.progress import Progress

    records: list[Record] = []
    entries: dict[str, dict] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("loading knowledge sources", total=len(sources))
        for name, src in sources.items():
            bar.update(task, description=f"loading {name}")
            n0 = len(records)
            override = paths.get(name)
            try:
                records.extend(src.loader(path=override) if override else src.loader())
            except InputError:
                raise  # already names the input and the fix
            except Exception as exc:  # noqa: BLE001 - a broken source is named, not a bare traceback
                raise InputError(
                    f"knowledge source {name!r}",
                    f"failed to load ({type(exc).__name__}: {exc})",
                    "fix or remove the source's files, or disable its plugin",
                ) from exc
            files = [override] if override else src.files
            entries[name] = {
                "plugin": src.plugin,
                "n_records": len(records) - n0,
                "override": bool(override),
                "files": [_file_entry(Path(f)) for f in files if Path(f).is_file()],
            }
            bar.advance(task)
    return list({r.id: r for r in records}.values()), entries


def _write_index(folder: Path, records: list[Record], settings, progress: bool, flat_max: int, batch_size: int) -> dict:
    """Embed the semantic records into a FAISS index (flat, or HNSW past ``flat_max``) in ``folder``."""
    import faiss

    from .embed import Embedder

    sem_rows = np.array([i for i, r in enumerate(records) if r.semantic], dtype=np.int64)
    t0 = time.perf_counter()
    vecs = Embedder(threads=settings.threads).encode(
        [records[i].text for i in sem_rows], batch_size=batch_size, progress=progress
    )
    seconds = time.perf_counter() - t0
    if len(sem_rows) > flat_max:
        index, index_type = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT), "HNSW32"
        index.hnsw.efConstruction = 80
    else:
        index, index_type = faiss.IndexFlatIP(vecs.shape[1]), "FlatIP"
    index.add(vecs)
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "sem_rows.npy", sem_rows)
    return {
        "n_semantic": int(len(sem_rows)),
        "index_type": index_type,
        "dim": int(vecs.shape[1]),
        "embed_seconds": round(seconds, 2),
    }


def build(
    settings,
    sources: dict[str, Source] | None = None,
    paths: dict[str, str | Path] | None = None,
    progress: bool = True,
    flat_max: int = FLAT_MAX,
    batch_size: int = 64,
) -> dict:
    """Load every source, derive gene summaries, embed the semantic records and save store, index and manifest.

    ``paths`` replaces a source's bundled files with the user's own (e.g. a full CellPhoneDB release zip or a
    BioGRID TAB3 file). Returns the manifest.
    """
    from .embed import model_info
    from .sources import default_files, load_gene_info
    from .store import save_store
    from .summaries import gene_summaries

    t0 = time.perf_counter()
    sources = registered_sources(settings) if sources is None else sources
    paths = {k: Path(v) for k, v in (paths or {}).items()}
    unknown = set(paths) - set(sources)
    if unknown:
        raise InputError(
            f"source {sorted(unknown)[0]!r}", "is not a registered knowledge source", f"use one of {sorted(sources)}"
        )
    records, entries = _load_sources(sources, paths, progress)
    gene_info_file = default_files()["gene_info"][0]
    gene_info = load_gene_info(gene_info_file)
    summaries = gene_summaries(records, gene_info)
    records.extend(summaries)
    out = index_dir(settings)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    save_store(tmp, records, _aliases(records, gene_info))
    built = _write_index(tmp, records, settings, progress, flat_max, batch_size)
    manifest = {
        "format": FORMAT,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model_info(),
        "versions": _versions(),
        "sources": entries,
        "gene_info": {"files": [_file_entry(gene_info_file)]},
        "n_records": len(records),
        "n_summaries": len(summaries),
        "kinds": {k: sum(r.kind == k for r in records) for k in sorted({r.kind for r in records})},
        **built,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    manifest["bytes"] = sum(p.stat().st_size for p in tmp.iterdir())
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _LOADED.pop(str(out), None)
    return manifest


def _aliases(records: list[Record], gene_info: dict[str, dict]) -> dict[str, list[str]]:
    """Alias -> symbols: UniProt gene-name synonyms and CellPhoneDB complex names (-> their subunits)."""
    symbols = {g for r in records for g in r.genes}
    out: dict[str, list[str]] = {}
    for sym, info in gene_info.items():
        for alias in info["aliases"]:
            if alias not in symbols and alias != sym:
                out.setdefault(alias, []).append(sym)
    for r in records:
        if r.kind == "ligand_receptor":
            for name, genes in ((r.ligand, r.ligand_genes), (r.receptor, r.receptor_genes)):
                if len(genes) > 1 or name not in genes:
                    out[name.upper()] = list(genes)
    return out


def load(settings, progress: bool = True, rebuild: bool = True, sources: dict[str, Source] | None = None):
    """The knowledge base for these settings: built on first use or when stale, then kept in memory.

    ``sources`` (default: the registered ones) is what the index must hold."""
    from .retrieve import KnowledgeBase

    folder = index_dir(settings)
    kb = _LOADED.get(str(folder))
    if kb is not None:
        return kb
    reasons = stale_reasons(settings, sources)
    if reasons:
        if not rebuild:
            raise InputError(
                folder, f"knowledge index is not usable ({'; '.join(reasons)})", "run `c2s knowledge build`"
            )
        build(settings, sources=sources, progress=progress)
    kb = KnowledgeBase(folder, threads=settings.threads)
    _LOADED[str(folder)] = kb
    return kb
