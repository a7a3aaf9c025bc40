"""Rewards for reinforcement learning of C2S models (GRPO), and the observed cells they compare against.

Rewards come from plugins (hook ``register_rewards``): ``register(name, factory)``, where
``factory(data=RewardData, **options)`` returns ``reward(prompts, completions, **columns) -> list[float]``,
one value per completion, the way TRL's GRPOTrainer calls reward functions (it passes the training dataset's
columns: ``group`` the cell type of the prompt's cell, ``control`` its control sentence, ``label`` the expected
answer). The built-ins (``plugins/c2s_builtins/rewards_plugin.py``):

- ``program_agreement``: Pearson (or Kendall) correlation, over a named gene program's genes, of the
  completion's predicted log-fold change (reconstructed completion minus reconstructed control sentence)
  with the observed mean log-fold change of that cell type (perturbed minus control cells, every side as
  top-k sentences reconstructed by the same reverse transform); 0 when undefined.
- ``validity``: distinct known genes over max(words, control-sentence length): unknown words, repeated genes
  and short sentences all cost.
- ``distribution``: how much a completion lowers the MMD (RBF, median bandwidth; :func:`c2s_agent.metrics.mmd`)
  between the completions of its cell type in the batch and observed perturbed cells of that type, in the
  reference PCA space: n (MMD^2 without it - MMD^2 with it) for a group of n completions, so the scale does not
  shrink with the batch (0 for groups of fewer than 3 completions).
- ``exact_match``: 1 when the completion is the expected label (case, underscores and a final period aside).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

Reward = Callable[..., list[float]]


def _words(text: str) -> list[str]:
    return [w.strip(".") for w in str(text).replace(",", " ").upper().split() if w.strip(".")]


@dataclass
class RewardData:
    """Observed cells for the rewards: per group (cell type), mean control and perturbed profiles and the
    perturbed cells' sentences, over the model's gene vocabulary, in sentence space (top-``k`` sentences
    reconstructed by ``reverse``)."""

    genes: list[str]
    reverse: object  # c2s_agent.sentences.ReverseTransform
    k: int
    control: dict[str, np.ndarray]
    perturbed: dict[str, np.ndarray]
    perturbed_sentences: dict[str, list[str]]
    reference: object = None  # AnnData the PCA encoder is fitted on (for ``distribution``)
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _encoder: object = field(default=None, repr=False)

    def __post_init__(self):
        self._index = {g: i for i, g in enumerate(self.genes)}

    @classmethod
    def from_cells(cls, adata, model, rows, label_key: str, condition_key: str, control: str, reverse) -> RewardData:
        """Profiles of the cells at positions ``rows`` of ``adata`` (``model`` turns cells into its sentences)."""
        k = int(model.top_k["perturbation"])
        sub = adata[np.asarray(rows)]
        texts, _, _ = model.sentences(sub, k)
        genes = list(model.genes) if model.genes else sorted({w for t in texts for w in t.split()})
        data = cls(genes, reverse, k, {}, {}, {}, reference=adata)
        lab = sub.obs[label_key].astype(str).to_numpy()
        is_ctrl = sub.obs[condition_key].astype(str).to_numpy() == control
        texts = np.asarray(texts, dtype=object)
        for g in sorted(set(lab)):
            c, p = (lab == g) & is_ctrl, (lab == g) & ~is_ctrl
            if c.any() and p.any():
                data.control[g] = data.profile(texts[c].tolist()).mean(0)
                data.perturbed[g] = data.profile(texts[p].tolist()).mean(0)
                data.perturbed_sentences[g] = texts[p].tolist()
        if not data.control:
            raise InputError(
                "data",
                f"has no cell type with both {control!r} and perturbed cells",
                f"check --condition-key and --control (conditions: "
                f"{sorted(set(adata.obs[condition_key].astype(str)))})",
            )
        return data

    def profile(self, sentences: Sequence[str]) -> np.ndarray:
        """(n, genes) expression reconstructed from rank; the first occurrence of a gene sets its rank."""
        out = np.zeros((len(sentences), len(self.genes)))
        for i, s in enumerate(sentences):
            cols, ranks = [], []
            for r, w in enumerate(_words(s)):
                j = self._index.get(w)
                if j is not None and j not in cols:
                    cols.append(j)
                    ranks.append(r)
            if cols:
                out[i, cols] = self.reverse.predict(np.asarray(ranks))
        return out

    def observed_lfc(self, group: str) -> np.ndarray:
        if group not in self.control:
            raise InputError(
                "group", f"{group!r} has no observed perturbation response", f"use one of {sorted(self.control)}"
            )
        return self.perturbed[group] - self.control[group]

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        """Cells in the reference PCA space (the encoder is fitted once on ``reference``)."""
        if self._encoder is None:
            from ..metrics import get_encoder

            if self.reference is None:
                raise InputError(
                    "reward data",
                    "has no reference cells to fit the PCA encoder on",
                    "build it with RewardData.from_cells",
                )
            self._encoder = get_encoder("pca").fit(self.reference)
        return self._encoder.encode(list(sentences))


def _need(data, name: str) -> None:
    if data is None:
        raise InputError(f"reward {name!r}", "needs observed perturbed cells", "use it with the perturbation task")


def _corr(a: np.ndarray, b: np.ndarray, method: str) -> float:
    from scipy.stats import kendalltau

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    v = float(np.corrcoef(a, b)[0, 1]) if method == "pearson" else float(kendalltau(a, b).statistic)
    return v if np.isfinite(v) else 0.0


def program_agreement(data: RewardData, program: str = "ifn_alpha", method: str = "pearson", **_) -> Reward:
    """Correlation of each completion's predicted log-fold change with the observed one on a program's genes."""
    from ..screen import get_program

    _need(data, "program_agreement")
    if method not in ("pearson", "kendall"):
        raise InputError("method", f"{method!r} is not a correlation", "use 'pearson' or 'kendall'")
    genes = get_program(program).restricted(data.genes)
    if len(genes) < 3:
        raise InputError(
            "program",
            f"{program!r} has {len(genes)} genes in the model's vocabulary",
            "choose a program the model's genes cover",
        )
    cols = np.array([data.genes.index(g) for g in genes])
    observed = {g: data.observed_lfc(g)[cols] for g in data.control}

    def reward(prompts, completions, group, control, **_) -> list[float]:
        pred = data.profile(completions)[:, cols] - data.profile(control)[:, cols]
        return [_corr(p, observed[g], method) for p, g in zip(pred, group)]

    return reward


def validity(data: RewardData | None = None, **_) -> Reward:
    """Distinct known genes over max(words, control length): 1 for a full-length sentence of real genes."""
    known = frozenset(data.genes) if data is not None else None

    def reward(prompts, completions, control=None, **_) -> list[float]:
        out = []
        for i, c in enumerate(completions):
            words = _words(c)
            good = {w for w in words if known is None or w in known}
            target = len(_words(control[i])) if control is not None else len(words)
            out.append(len(good) / max(len(words), target, 1))
        return out

    return reward


def distribution(data: RewardData, **_) -> Reward:
    """Leave-one-out MMD improvement of each completion within its cell type's completions of the batch."""
    from ..metrics import mmd
    from ..metrics.distribution import median_bandwidth

    _need(data, "distribution")
    observed = {g: data.embed(s) for g, s in data.perturbed_sentences.items()}

    def reward(prompts, completions, group, **_) -> list[float]:
        out = np.zeros(len(completions))
        group = np.asarray(group, dtype=object)
        emb = data.embed(completions)
        for g in set(group):
            rows = np.flatnonzero(group == g)
            if len(rows) < 3 or g not in observed:
                continue
            x, y = emb[rows], observed[g]
            s = median_bandwidth(x, y)
            full = mmd(x, y, bandwidth=s, n_boot=0, max_cells=None).value
            for j, r in enumerate(rows):
                out[r] = len(rows) * (mmd(np.delete(x, j, 0), y, bandwidth=s, n_boot=0, max_cells=None).value - full)
        return out.tolist()

    return reward


def _norm(text: str) -> str:
    return " ".join(str(text).replace("_", " ").strip().rstrip(".").lower().split())


def exact_match(data: RewardData | None = None, **_) -> Reward:
    """1.0 when the completion is the expected label, else 0.0."""

    def reward(prompts, completions, label, **_) -> list[float]:
        return [float(_norm(c) == _norm(y)) for c, y in zip(completions, label)]

    return reward


def registered_rewards(settings=None) -> dict[str, Callable]:
    """Reward factories by name, from every plugin (built-ins first)."""
    from .. import registry

    return {name: reg.factory for name, reg in registry.rewards(settings).items()}


def make_rewards(
    names: Sequence[str], data: RewardData | None, options: dict | None = None, settings=None
) -> list[Reward]:
    """The reward functions for ``names`` (each named after its reward, as TRL logs them)."""
    factories = registered_rewards(settings)
    unknown = [n for n in names if n not in factories]
    if unknown or not names:
        raise InputError(
            "--reward",
            f"{unknown or 'nothing'} is not a registered reward",
            f"use one or more of {sorted(factories)}, comma-separated",
        )
    out = []
    for n in names:
        fn = factories[n](data=data, **(options or {}))
        fn.__name__ = n.replace(":", "_")
        out.append(fn)
    return out
