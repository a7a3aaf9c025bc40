"""Cell encoders: map real and generated cells (AnnData, cell sentences or sentence strings) into one space.

Built in: ``"pca"``, a :class:`ReferenceEncoder` fitted on a reference AnnData (highly variable genes of the
log-normalised data, then PCA; deterministic and persistable), and ``"c2s"``, the C2S model's own
embedding (:class:`C2SEncoder`). Plugins add more (e.g. scGPT or Geneformer wrappers) through the
``register_encoders`` hook with ``register(name, factory)``, ``factory(settings)`` returning an :class:`Encoder`.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ..errors import InputError
from ..sentences import CellSentences, ReverseTransform, to_sentences
from .inputs import is_sentences

MANIFEST = "manifest.json"
FORMAT = "c2s-agent reference encoder"


@runtime_checkable
class Encoder(Protocol):
    """Maps cells to an (n_cells, dim) float array. ``needs_fit``: call ``fit(reference_adata)`` before
    ``encode``. ``last_report`` says what the last ``encode`` did (missing genes, unknown names, ...)."""

    name: str
    needs_fit: bool
    last_report: dict

    def fit(self, reference) -> Encoder: ...

    def encode(self, cells) -> np.ndarray: ...


def _versions() -> dict:
    out = {}
    for dist in ("c2s-agent", "numpy", "scipy", "scanpy", "anndata"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ReferenceEncoder:
    """Highly variable genes of a log-normalised reference, centred (z-scored, clipped at +-10, with
    ``scale=True``), projected on the reference's top principal components.

    Fit it on a broad reference (the whole dataset the real cells come from): fitted on one cell type alone,
    its components follow that type's noise and distances lose their meaning. Centring without scaling is the
    default because z-scoring lets rarely expressed genes dominate.

    Cells to encode are normalised the same way (:func:`c2s_agent.data.prepare`); genes are aligned by
    upper-cased name and genes the cells lack count as 0 (not expressed) and are reported in ``last_report``.
    Sentences are turned back into expression with a :class:`~c2s_agent.sentences.ReverseTransform` fitted on
    the reference. Fitting is deterministic: seeded subsampling of at most ``max_fit_cells`` cells, seurat-flavour
    HVGs, and the gene covariance's top eigenvectors (Lanczos from a fixed start; signs fixed).
    """

    name = "pca"
    needs_fit = True

    def __init__(
        self, n_genes: int = 2000, n_comps: int = 50, scale: bool = False, max_fit_cells: int = 10_000, seed: int = 0
    ):
        if n_genes < 2 or n_comps < 1:
            raise InputError(
                "reference encoder", f"n_genes={n_genes}, n_comps={n_comps}", "use n_genes >= 2 and n_comps >= 1"
            )
        self.params = {
            "n_genes": n_genes,
            "n_comps": n_comps,
            "scale": scale,
            "max_fit_cells": max_fit_cells,
            "seed": seed,
        }
        self.genes: np.ndarray | None = None
        self.vocabulary: np.ndarray | None = None
        self.mean = self.scale = self.offset = self.components = None
        self.reverse: ReverseTransform | None = None
        self.reference: dict = {}
        self.last_report: dict = {}

    @property
    def fitted(self) -> bool:
        return self.components is not None

    @property
    def dim(self) -> int:
        return int(self.components.shape[0]) if self.fitted else self.params["n_comps"]

    def fit(self, reference) -> ReferenceEncoder:
        """Fit on a reference AnnData (counts or log-normalised)."""
        import scanpy as sc
        from scipy.sparse.linalg import eigsh

        from ..data import prepare

        if not hasattr(reference, "obs_names"):
            raise InputError(
                "reference",
                f"is a {type(reference).__name__}, not an AnnData",
                "fit the encoder on an AnnData of real cells (counts or log-normalised)",
            )
        data = prepare(reference, drop_empty=True)
        data.var_names = pd.Index(data.var_names.astype(str).str.upper())
        data = data[:, ~data.var_names.duplicated()].copy()
        p = self.params
        if data.n_obs > p["max_fit_cells"]:
            rows = np.sort(np.random.default_rng(p["seed"]).choice(data.n_obs, p["max_fit_cells"], replace=False))
            data = data[rows].copy()
        n_genes = min(p["n_genes"], data.n_vars)
        n_comps = min(p["n_comps"], n_genes, data.n_obs - 1)
        if n_comps < 1:
            raise InputError(
                "reference", f"has {data.n_obs} cells and {data.n_vars} genes", "fit on at least 3 cells and 2 genes"
            )
        hvg = sc.pp.highly_variable_genes(data, n_top_genes=n_genes, flavor="seurat", inplace=False)
        keep = np.flatnonzero(hvg["highly_variable"].to_numpy())
        X = np.asarray(data.X[:, keep].toarray(), dtype=np.float64)
        mean, std = X.mean(0), X.std(0, ddof=1)
        std[std == 0] = 1.0
        if not p["scale"]:
            std[:] = 1.0
        Z = np.clip((X - mean) / std, -10, 10)
        offset = Z.mean(0)
        Z -= offset
        cov = Z.T @ Z / (len(Z) - 1)
        if n_comps < cov.shape[0] - 1:  # Lanczos for the top components, started from a fixed vector
            w, v = eigsh(cov, k=n_comps, v0=np.ones(cov.shape[0]))
        else:
            w, v = np.linalg.eigh(cov)
        order = np.argsort(w)[::-1][:n_comps]
        w, comps = w[order], v[:, order].T
        comps *= np.sign(comps[np.arange(n_comps), np.abs(comps).argmax(1)])[:, None]
        self.genes, self.vocabulary = data.var_names[keep].to_numpy(dtype=str), data.var_names.to_numpy(dtype=str)
        self.mean, self.scale, self.offset, self.components = mean, std, offset, comps
        self.reverse = ReverseTransform.fit(to_sentences(data, top_k=None, tie_break="random"), seed=p["seed"])
        self.reference = {
            "n_cells": int(data.n_obs),
            "n_genes": int(data.n_vars),
            "explained_variance": w.tolist(),
            "normalisation": dict(data.uns["c2s_input"]),
        }
        return self

    def _require_fitted(self):
        if not self.fitted:
            raise InputError(
                "encoder 'pca'", "is not fitted", "call .fit(reference_adata) or ReferenceEncoder.load(folder)"
            )

    def expression(self, cells):
        """(cells x encoder genes) log1p(CP10k) matrix of ``cells``, aligned to the encoder's genes, and a report."""
        from ..data import prepare

        self._require_fitted()
        report: dict[str, Any] = {}
        if isinstance(cells, CellSentences):
            data = self.reverse.reconstruct(cells)
            report["input"] = "cell sentences (reverse transform)"
        elif is_sentences(cells):
            data = self.reverse.reconstruct(list(cells), genes=self.vocabulary)
            report.update(
                input="sentence strings (reverse transform)",
                unknown_gene_names=data.uns["c2s_reverse"]["n_unknown_genes"],
                repeated_gene_names=data.uns["c2s_reverse"]["n_duplicated_genes"],
            )
        elif hasattr(cells, "obs_names"):
            data = cells if "c2s_input" in cells.uns and not cells.isbacked else prepare(cells)
            report["input"] = "AnnData " + data.uns.get("c2s_input", {}).get("detected", "log-normalised")
        else:
            raise InputError(
                "cells", f"are a {type(cells).__name__}", "pass an AnnData, CellSentences or sentence strings"
            )
        names = pd.Index(np.asarray(data.var_names, dtype=str)).str.upper()
        first = pd.Series(np.arange(len(names)), index=names)
        first = first[~first.index.duplicated()]
        cols = first.reindex(self.genes).to_numpy()
        present = ~np.isnan(cols)
        X = np.zeros((data.n_obs, len(self.genes)))
        if present.any():
            block = data.X[:, cols[present].astype(np.int64)]
            X[:, present] = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        report.update(
            n_cells=int(data.n_obs),
            n_genes=len(self.genes),
            genes_missing=int((~present).sum()),
            missing_examples=self.genes[~present][:10].tolist(),
        )
        return X, report

    def encode(self, cells) -> np.ndarray:
        X, self.last_report = self.expression(cells)
        Z = np.clip((X - self.mean) / self.scale, -10, 10)
        return (Z - self.offset) @ self.components.T

    def save(self, folder: str | Path) -> Path:
        """Write arrays, the reverse transform and a manifest (genes, parameters, versions, checksums)."""
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "arrays.npz",
            mean=self.mean,
            scale=self.scale,
            offset=self.offset,
            components=self.components,
            genes=self.genes,
            vocabulary=self.vocabulary,
        )
        self.reverse.save(folder / "reverse.json")
        manifest = {
            "format": FORMAT,
            "version": 1,
            "name": self.name,
            "params": self.params,
            "genes": self.genes.tolist(),
            "dim": self.dim,
            "reference": self.reference,
            "versions": _versions(),
            "files": {f: _sha256(folder / f) for f in ("arrays.npz", "reverse.json")},
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceEncoder:
        """Load a saved encoder, checking the manifest's checksums."""
        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                folder,
                f"holds no readable {MANIFEST} ({type(exc).__name__})",
                "save an encoder there with ReferenceEncoder(...).fit(ref).save(folder)",
            ) from None
        if manifest.get("format") != FORMAT:
            raise InputError(
                folder, f"is not a {FORMAT} (format {manifest.get('format')!r})", "point to a saved reference encoder"
            )
        for name, digest in manifest["files"].items():
            if not (folder / name).is_file() or _sha256(folder / name) != digest:
                raise InputError(
                    folder / name, "is missing or does not match the manifest checksum", "re-save the encoder"
                )
        enc = cls(**manifest["params"])
        with np.load(folder / "arrays.npz") as arrays:
            enc.mean, enc.scale, enc.offset = arrays["mean"], arrays["scale"], arrays["offset"]
            enc.components = arrays["components"]
            enc.genes, enc.vocabulary = arrays["genes"], arrays["vocabulary"]
        enc.reverse = ReverseTransform.load(folder / "reverse.json")
        enc.reference = manifest["reference"]
        return enc


class C2SEncoder:
    """The C2S model's own cell embedding (:meth:`c2s_agent.models.C2SModel.embed`): AnnData, CellSentences or
    sentence strings, turned into prompts as the model was trained (its top-K and tie-breaking); the model
    (``model`` or the settings' model, default the bundled one) loads on first use."""

    name = "c2s"
    needs_fit = False

    def __init__(self, settings=None, model: str | None = None):
        self.settings, self.model_name = settings, model
        self._model = None
        self.last_report: dict = {}

    def fit(self, reference) -> C2SEncoder:
        return self

    @property
    def model(self):
        if self._model is None:
            from ..models import load_model  # heavy (torch, transformers): imported on first use

            self._model = load_model(self.model_name, self.settings)
        return self._model

    def encode(self, cells) -> np.ndarray:
        emb = np.asarray(self.model.embed(cells), dtype=np.float64)
        self.last_report = {"input": type(cells).__name__, "n_cells": int(len(emb)), "dim": int(emb.shape[1])}
        return emb


def available(settings=None) -> dict:
    """Registered encoder factories by name."""
    from .. import registry

    return {name: reg.factory for name, reg in registry.encoders(settings).items()}


def get_encoder(encoder: str | Encoder = "pca", settings=None) -> Encoder:
    """An encoder instance: ``encoder`` itself, or a new one from the factory registered under that name."""
    if not isinstance(encoder, str):
        if not isinstance(encoder, Encoder):
            raise InputError(
                "encoder",
                f"{type(encoder).__name__} has no name/needs_fit/fit/encode",
                "pass a registered encoder name or an object following c2s_agent.metrics.encoders.Encoder",
            )
        return encoder
    factories = available(settings)
    if encoder not in factories:
        raise InputError("encoder", f"{encoder!r} is not registered", f"choose one of {sorted(factories)}")
    return factories[encoder](settings)
