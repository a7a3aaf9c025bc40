"""``evaluate_generation``: every metric between real and generated cells, in one call, with intervals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..sentences import CellSentences, ReverseTransform, to_sentences
from ._sampling import MetricValue
from .distribution import MAX_CELLS, energy_distance, gene_wasserstein, mmd, sliced_wasserstein
from .encoders import Encoder, ReferenceEncoder, get_encoder
from .frechet import scfid
from .inputs import is_sentences, load_cells, n_cells
from .lfc import lfc_agreement

EMBEDDING_METRICS = {"scfid": scfid, "mmd": mmd, "energy": energy_distance, "sliced_wasserstein": sliced_wasserstein}
EXPRESSION_METRICS = ("gene_wasserstein",)
LFC_METRICS = ("lfc_pearson", "lfc_kendall")
METRICS = (*EMBEDDING_METRICS, *EXPRESSION_METRICS, *LFC_METRICS)
DESCRIPTIONS = {
    "scfid": "Frechet distance of embeddings (lower = closer)",
    "mmd": "unbiased squared MMD, RBF kernel, median bandwidth (lower = closer)",
    "energy": "energy distance of embeddings (lower = closer)",
    "sliced_wasserstein": "sliced Wasserstein-1 of embeddings (lower = closer)",
    "gene_wasserstein": "mean per-gene Wasserstein-1 of log expression (lower = closer)",
    "lfc_pearson": "Pearson r of generated vs real mean log-fold change vs control (higher = better)",
    "lfc_kendall": "Kendall's tau of generated vs real mean log-fold change vs control (higher = better)",
}
N_EXPRESSION_GENES = 1000


@dataclass
class EvaluationResult:
    """Metric values with intervals, the embeddings they came from, and notes on what was done."""

    metrics: dict[str, MetricValue]
    encoder: str
    real_embedding: np.ndarray
    generated_embedding: np.ndarray
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: each metric maps to its value and interval."""
        return {
            "encoder": self.encoder,
            "n_real": len(self.real_embedding),
            "n_generated": len(self.generated_embedding),
            "metrics": {
                k: {
                    "value": _num(v.value),
                    "interval": None if v.low is None else [_num(v.low), _num(v.high)],
                    "n_real": v.n_real,
                    "n_generated": v.n_generated,
                }
                for k, v in self.metrics.items()
            },
            "notes": self.notes,
            "details": self.details,
        }

    def table(self) -> pd.DataFrame:
        rows = [
            {
                "metric": k,
                "value": v.value,
                "low": v.low,
                "high": v.high,
                "n_real": v.n_real,
                "n_generated": v.n_generated,
                "meaning": DESCRIPTIONS.get(k, ""),
            }
            for k, v in self.metrics.items()
        ]
        return pd.DataFrame(rows).set_index("metric")


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _check_metrics(metrics, has_control: bool) -> list[str]:
    if metrics is None:
        return [m for m in METRICS if has_control or m not in LFC_METRICS]
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError("metrics", f"{unknown} are not known", f"choose from {list(METRICS)}")
    if not metrics:
        raise InputError("metrics", "is empty", f"choose from {list(METRICS)}")
    if not has_control and any(m in LFC_METRICS for m in metrics):
        raise InputError(
            "metrics",
            "lfc_pearson/lfc_kendall need control cells to compute fold changes",
            "pass control= (an AnnData of the unperturbed cells) or drop those metrics",
        )
    return list(dict.fromkeys(metrics))


def _expression(cells, encoder, reverse: ReverseTransform | None):
    """Log1p(CP10k) AnnData of ``cells`` with upper-cased gene names (sentences through the reverse transform)."""
    from ..data import prepare

    if isinstance(cells, CellSentences):
        data = reverse.reconstruct(cells)
    elif is_sentences(cells):
        vocab = encoder.vocabulary if isinstance(encoder, ReferenceEncoder) else None
        if vocab is None:
            raise InputError(
                "generated cells",
                "are sentence strings, and gene-level metrics need a gene vocabulary",
                "use the 'pca' encoder, or give generated cells as an AnnData",
            )
        data = reverse.reconstruct(list(cells), genes=vocab)
    else:
        data = cells if "c2s_input" in cells.uns and not cells.isbacked else prepare(cells)
    data = data.copy()
    data.uns.setdefault("c2s_input", {"detected": "log-normalised", "steps": []})
    data.var_names = pd.Index(np.asarray(data.var_names, dtype=str)).str.upper()
    return data[:, ~data.var_names.duplicated()]


def _gene_matrices(real_x, gen_x, n_genes: int):
    shared = real_x.var_names.intersection(gen_x.var_names)
    if len(shared) == 0:
        raise InputError(
            "generated cells", "share no gene names with the real cells", "use the same gene symbols on both sides"
        )
    r = real_x[:, shared].X
    r = r.toarray() if hasattr(r, "toarray") else np.asarray(r)
    var = r.var(0)
    keep = np.argsort(-var, kind="stable")[:n_genes]
    g = gen_x[:, shared[keep]].X
    return r[:, keep], (g.toarray() if hasattr(g, "toarray") else np.asarray(g)), shared[keep]


def _fitted_encoder(encoder, real, reference, settings, notes: list[str]) -> Encoder:
    enc = get_encoder(encoder, settings)
    if enc.needs_fit and not getattr(enc, "fitted", False):
        ref = load_cells(reference, "reference") if reference is not None else real
        if not hasattr(ref, "obs_names"):
            raise InputError(
                "reference",
                "must be an AnnData to fit the encoder on",
                "pass reference= (an AnnData of real cells) or give real cells as an AnnData",
            )
        enc.fit(ref)
        notes.append(
            f"encoder {enc.name!r} fitted on {'the reference' if reference is not None else 'the real cells'} "
            f"({n_cells(ref)} cells)"
            + (
                ""
                if reference is not None
                else "; pass the whole dataset as reference for a space that spans other cell types too"
            )
        )
    return enc


def _comparable_real(real, generated, notes: list[str]):
    """Real cells as sentences of the generated cells' length when the generated cells are sentences."""
    if not (is_sentences(generated) and hasattr(real, "obs_names")):
        return real
    lengths = generated.lengths if isinstance(generated, CellSentences) else [len(s.split()) for s in generated]
    k = max(1, int(np.max(lengths)))
    notes.append(
        f"generated cells are sentences: real cells were turned into top-{k} sentences and both sides "
        "reconstructed with the same reverse transform"
    )
    return to_sentences(real, top_k=k)


def _encoder_notes(report: dict) -> list[str]:
    out = []
    if report.get("genes_missing"):
        out.append(
            f"{report['genes_missing']} of the encoder's {report['n_genes']} genes are absent from the generated "
            f"cells and count as 0 (e.g. {report['missing_examples'][:5]})"
        )
    if report.get("unknown_gene_names"):
        out.append(f"{report['unknown_gene_names']} gene names in generated sentences are unknown and were ignored")
    return out


def _expression_metrics(
    chosen,
    real,
    real_for_metrics,
    generated,
    enc,
    control,
    genes,
    top_n,
    n_boot,
    max_cells,
    seed,
    level,
    results: dict,
    details: dict,
    notes: list[str],
) -> None:
    """Gene-level metrics (per-gene Wasserstein, fold-change agreement) on expression reconstructed as needed."""
    reverse = getattr(enc, "reverse", None)
    if reverse is None and (is_sentences(generated) or is_sentences(real_for_metrics)):
        if not hasattr(real, "obs_names"):
            raise InputError(
                "real cells",
                "are sentences; gene-level metrics need an AnnData to fit the reverse transform",
                "give real cells as an AnnData",
            )
        reverse = ReverseTransform.fit(to_sentences(real, top_k=None), seed=seed)
    real_x, gen_x = _expression(real_for_metrics, enc, reverse), _expression(generated, enc, reverse)
    if "gene_wasserstein" in chosen:
        r, g, used = _gene_matrices(real_x, gen_x, N_EXPRESSION_GENES)
        results["gene_wasserstein"] = gene_wasserstein(r, g, n_boot=n_boot, seed=seed, max_cells=max_cells, level=level)
        details["gene_wasserstein_genes"] = len(used)
    if any(m in LFC_METRICS for m in chosen):
        agreement = lfc_agreement(
            gen_x, real_x, control, genes=genes, top_n=top_n, n_boot=n_boot, seed=seed, level=level
        )
        for m, key in (("lfc_pearson", "pearson"), ("lfc_kendall", "kendall")):
            if m in chosen:
                lo_hi = getattr(agreement, f"{key}_interval") or (None, None)
                results[m] = MetricValue(getattr(agreement, key), *lo_hi, real_x.n_obs, gen_x.n_obs)
        details["lfc"] = agreement.to_dict()
        if agreement.genes_missing:
            notes.append(f"{len(agreement.genes_missing)} program genes are not measured and were left out")


def evaluate_generation(
    real,
    generated,
    encoder: str | Encoder = "pca",
    metrics=None,
    *,
    reference=None,
    control=None,
    genes=None,
    top_n: int = 100,
    n_boot: int = 100,
    max_cells: int | None = MAX_CELLS,
    seed: int = 0,
    level: float = 0.95,
    use_sentences: bool = True,
    settings=None,
) -> EvaluationResult:
    """Compare generated cells with real ones on every requested metric, each with a bootstrap interval.

    ``real`` and ``generated``: AnnData (counts or log-normalised), ``.h5ad`` paths, CellSentences or lists of
    sentence strings (a ``.txt`` path holds one sentence a line). ``encoder``: a registered name ("pca",
    "c2s", or a plugin's) or an :class:`Encoder`; an encoder that needs fitting is fitted on ``reference``
    (default: the real cells). When generated cells are sentences and real cells an AnnData, the real cells
    are turned into sentences of the same length first, so both sides carry the same information (with
    ``use_sentences``, generated AnnData from the model, which keep their sentences in ``obs["c2s_sentence"]``,
    are evaluated as those sentences).
    ``control`` (AnnData) enables ``lfc_pearson``/``lfc_kendall`` on ``genes`` (a program) or the ``top_n``
    genes the real cells change most. ``max_cells`` caps the cells per side for the pairwise metrics (scFID
    always uses all). Metrics: see ``METRICS`` and ``DESCRIPTIONS``.
    """
    real = load_cells(real, "real cells")
    generated = load_cells(generated, "generated cells", prefer_sentences=use_sentences)
    control = load_cells(control, "control cells") if control is not None else None
    if control is not None and not hasattr(control, "obs_names"):
        raise InputError("control cells", "must be an AnnData of measured cells", "pass an AnnData or .h5ad path")
    chosen = _check_metrics(metrics, control is not None)
    for name, cells in (("real cells", real), ("generated cells", generated)):
        if n_cells(cells) < 2:
            raise InputError(name, f"hold {n_cells(cells)} cells", "give at least two cells on each side")
    notes: list[str] = []
    enc = _fitted_encoder(encoder, real, reference, settings, notes)
    real_for_metrics = _comparable_real(real, generated, notes)
    emb_real = enc.encode(real_for_metrics)
    report_real = dict(getattr(enc, "last_report", {}))
    emb_gen = enc.encode(generated)
    report_gen = dict(getattr(enc, "last_report", {}))
    notes += _encoder_notes(report_gen)
    results: dict[str, MetricValue] = {}
    for name in chosen:
        if name in EMBEDDING_METRICS:
            kwargs = {} if name == "scfid" else {"max_cells": max_cells}
            results[name] = EMBEDDING_METRICS[name](emb_real, emb_gen, n_boot=n_boot, seed=seed, level=level, **kwargs)
    details = {"encoder_report": {"real": report_real, "generated": report_gen}}
    if any(m in EXPRESSION_METRICS or m in LFC_METRICS for m in chosen):
        _expression_metrics(
            chosen,
            real,
            real_for_metrics,
            generated,
            enc,
            control,
            genes,
            top_n,
            n_boot,
            max_cells,
            seed,
            level,
            results,
            details,
            notes,
        )
    return EvaluationResult({m: results[m] for m in chosen}, enc.name, emb_real, emb_gen, notes, details)
