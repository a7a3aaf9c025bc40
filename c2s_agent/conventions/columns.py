"""Which ``obs`` columns of a dataset hold its cell types, conditions, samples and clusters, whatever they are
called, and which condition value is the control.

Columns are recognised by their names (``cell_type``, ``CellType``, ``bulk_labels``, ``louvain``, ``stim`` ...)
and by their values (labels that name Cell Ontology terms; a value that reads like a control).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from .ontology import lookup
from .slots import PREDICTED_TYPE

#: Name patterns per role, most telling first. Matched against the lower-cased name with separators removed.
NAME_HINTS = {
    "cell_type": (
        "celltype",
        "cellontologyclass",
        "seuratannotation",
        "annotation",
        "bulklabel",
        "cellline",
        "celllabel",
        "label",
        "identity",
        "ident",
        "type",
        "class",
    ),
    "cluster": ("seuratcluster", "louvain", "leiden", "cluster", "clust", "kmean", "snn"),
    "condition": (
        "condition",
        "stim",
        "treatment",
        "treat",
        "perturbation",
        "stimulation",
        "genotype",
        "disease",
        "infection",
        "drug",
        "dose",
        "timepoint",
        "status",
        "group",
    ),
    "sample": (
        "sample",
        "donor",
        "origident",
        "patient",
        "individual",
        "replicate",
        "batch",
        "plate",
        "library",
        "channel",
        "subject",
        "mouse",
        "orig",
    ),
}
#: Values that read like the control of an experiment.
CONTROL = re.compile(
    r"^(?:.*[_\- ])?(?:ctrl|control|controls|unstim\w*|untreated|vehicle|mock|dmso|pbs|baseline|"
    r"wt|wild[_\- ]?type|healthy|normal|naive|none|day[_\- ]?0|d0|0h|t0|pre)(?:[_\- ].*)?$",
    re.I,
)
#: Most values a label column may have.
MAX_VALUES = 300


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower()).rstrip("s")


def _hint_rank(name: str, role: str) -> int | None:
    n = _squash(name)
    return next((i for i, h in enumerate(NAME_HINTS[role]) if h in n), None)


def categorical_columns(obs: pd.DataFrame, max_values: int = MAX_VALUES) -> dict[str, list[str]]:
    """Columns that label cells (categorical, text, boolean, or integers named like clusters) -> their values."""
    out = {}
    for c in obs.columns:
        s = obs[c]
        integer_clusters = s.dtype.kind in "iu" and _hint_rank(str(c), "cluster") is not None
        if s.dtype.name in ("category", "object", "bool") or integer_clusters:
            values = s.cat.categories if s.dtype.name == "category" else pd.unique(s.dropna())
            values = [str(v) for v in values if str(v) not in ("nan", "")]
            if 1 <= len(values) <= max_values:
                out[str(c)] = values
    return out


def control_value(values) -> str | None:
    """The value of a condition column that reads like the control ("ctrl", "control", "untreated" ...)."""
    return next((str(v) for v in values if CONTROL.match(str(v))), None)


def _ontology_share(values: list[str]) -> float:
    named = [v for v in values if not v.isdigit()]
    return sum(lookup(v) is not None for v in named[:60]) / max(1, len(named[:60]))


@dataclass(frozen=True)
class Columns:
    """The roles of a dataset's ``obs`` columns. ``labels`` lists every label-like column, cell types first."""

    cell_type: str | None = None
    condition: str | None = None
    sample: str | None = None
    cluster: str | None = None
    predicted: str | None = None
    labels: tuple[str, ...] = ()
    values: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def groups(self, prefer_predicted: bool = False) -> str | None:
        """The column to group cells by: the cell types (predicted ones first with ``prefer_predicted``), else
        the clusters, else the first label column."""
        order = (self.predicted, self.cell_type) if prefer_predicted else (self.cell_type, self.predicted)
        return next((c for c in (*order, self.cluster, *self.labels) if c), None)

    @property
    def control(self) -> str | None:
        """The control value of the condition column."""
        return control_value(self.values.get(self.condition, [])) if self.condition else None

    def role_of(self, column: str) -> str | None:
        return next(
            (r for r in ("cell_type", "condition", "sample", "cluster", "predicted") if getattr(self, r) == column),
            None,
        )


def find_columns(obs: pd.DataFrame) -> Columns:
    """The dataset's cell-type, condition, sample and cluster columns (None where it has none)."""
    cats = categorical_columns(obs)
    usable = {
        c: v
        for c, v in cats.items()
        if (len(v) > 1 or _hint_rank(c, "cell_type") is not None) and c != PREDICTED_TYPE and not c.startswith("c2s_")
    }  # a subset may hold one cell type
    used: set[str] = set()

    def pick(role: str, ok=lambda c, v: True, score=None, need_hint: bool = True) -> str | None:
        cands = [(c, v) for c, v in usable.items() if c not in used and ok(c, v)]
        ranked = sorted(
            cands, key=score or (lambda cv: (_hint_rank(cv[0], role) is None, _hint_rank(cv[0], role) or 0, len(cv[1])))
        )
        best = next((c for c, v in ranked if not need_hint or _hint_rank(c, role) is not None), None)
        if best:
            used.add(best)
        return best

    cluster = pick("cluster", lambda c, v: all(x.isdigit() for x in v) or _hint_rank(c, "cluster") is not None)
    condition = pick(
        "condition",
        lambda c, v: 2 <= len(v) <= 12 and control_value(v) is not None and _hint_rank(c, "cell_type") is None,
        need_hint=False,
    )
    condition = condition or pick("condition", lambda c, v: 2 <= len(v) <= 12 and _hint_rank(c, "cell_type") is None)
    cell_type = pick(
        "cell_type",
        lambda c, v: (
            len(v) <= 200
            and not all(x.isdigit() for x in v)
            and (_hint_rank(c, "cell_type") is not None or _ontology_share(v) >= 0.5)
        ),
        need_hint=False,
        score=lambda cv: (
            _hint_rank(cv[0], "cell_type") is None,
            -_ontology_share(cv[1]),
            _hint_rank(cv[0], "cell_type") or 0,
            len(cv[1]),
        ),
    )
    sample = pick("sample")
    labels = [c for c in (cell_type, cluster) if c]
    labels += sorted(
        (c for c in usable if c not in labels and c not in (condition, sample) and len(usable[c]) <= 100),
        key=lambda c: (_hint_rank(c, "cell_type") is None, len(usable[c])),
    )
    predicted = PREDICTED_TYPE if PREDICTED_TYPE in obs.columns else None
    return Columns(cell_type, condition, sample, cluster, predicted, tuple(labels), cats)
