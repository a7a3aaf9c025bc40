"""Training examples for the embedded model from the bundled Kang 2018 data.

Split: a fixed 80/20 split of all cells stratified by cell type (seed 0). The stimulated CD14 Mono cells are
additionally kept out of every training task (a held-out perturbation), and no test cell is ever trained on.
Tasks: cell type prediction (K genes -> one label token), generation conditioned on cell type and condition,
and IFN-beta perturbation (a control sentence of a type -> a stimulated sentence of the same type). Also the
condition genes of any labelled data (what cell-type prompts leave out), for this model and for fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions.slots import CELL_TYPE, CONDITION
from ..models.prompts import embedded
from ..models.tokenizer import label_token

SEED = 0
TEST_FRACTION = 0.2
HELD_OUT_PERTURBED = ("CD14 Mono", "stim")
PERTURBATION = "IFN-beta"
K_CLASSIFY, K_GENERATE, K_PERTURB = 128, 100, 64
TIE_BREAK = "mean"


@dataclass
class Split:
    train: np.ndarray  # cell positions trained on
    test: np.ndarray  # the 20% held-out cells
    held_out_perturbed: np.ndarray  # stimulated CD14 Mono cells in the training 80% (never trained on)


def make_split(adata, seed: int = SEED) -> Split:
    from sklearn.model_selection import train_test_split

    pos = np.arange(adata.n_obs)
    train, test = train_test_split(
        pos, test_size=TEST_FRACTION, random_state=seed, stratify=adata.obs[CELL_TYPE].astype(str).to_numpy()
    )
    ct, cond = adata.obs[CELL_TYPE].astype(str).to_numpy(), adata.obs[CONDITION].astype(str).to_numpy()
    out = (ct == HELD_OUT_PERTURBED[0]) & (cond == HELD_OUT_PERTURBED[1])
    return Split(np.sort(train[~out[train]]), np.sort(test), np.sort(train[out[train]]))


def condition_genes(
    adata,
    rows,
    n: int,
    genes=None,
    label_key: str = CELL_TYPE,
    condition_key: str = CONDITION,
    control: str = "ctrl",
) -> list[str]:
    """The ``n`` genes (of ``genes``, default all) that respond most to the condition within cell types of the
    cells at ``rows``: the mean over (type, non-control condition) pairs with >= 5 cells on each side of
    |condition - control| mean log1p(CP10k), largest first. Empty without such pairs; no other cells enter."""
    from ..data import prepare
    from ..sentences import gene_vocabulary

    if n <= 0 or condition_key not in adata.obs:
        return []
    x = prepare(adata[np.asarray(rows)])
    names, _ = gene_vocabulary(x.var_names)
    lab = x.obs[label_key].astype(str).to_numpy()
    cond = x.obs[condition_key].astype(str).to_numpy()
    shifts = []
    for t in np.unique(lab):
        ctrl = (lab == t) & (cond == control)
        for c in np.unique(cond[(lab == t) & (cond != control)]):
            other = (lab == t) & (cond == c)
            if ctrl.sum() >= 5 and other.sum() >= 5:
                shifts.append(np.asarray(x.X[other].mean(0) - x.X[ctrl].mean(0)).ravel())
    if not shifts:
        return []
    effect = np.abs(np.asarray(shifts)).mean(0)
    keep = np.ones(len(names), bool) if genes is None else np.isin(names, np.asarray(list(genes), dtype=object))
    order = [i for i in np.lexsort((np.arange(len(names)), -effect)) if keep[i]]
    return [str(names[i]) for i in order[:n]]


@dataclass
class Example:
    task: str
    prompt: str
    response: str
    label: str | None = None  # cell type label (classification examples)


def build_examples(adata, cs, split: Split, seed: int = SEED, unconditional: float = 0.0) -> list[Example]:
    """All training examples: one per training cell and task, plus one perturbation pair per stimulated cell.
    A random ``unconditional`` fraction of the generation prompts leave out the cell type."""
    ps = embedded()
    rng = np.random.default_rng(seed)
    drop = np.random.default_rng([seed, 1]).random(len(split.train)) < unconditional
    ct = adata.obs[CELL_TYPE].astype(str).to_numpy()
    cond = adata.obs[CONDITION].astype(str).to_numpy()
    examples: list[Example] = []
    for i, unconditional_prompt in zip(split.train, drop):
        examples.append(
            Example(
                CELL_TYPE,
                ps.format(CELL_TYPE, cell=cs.sentence(i, K_CLASSIFY)),
                ps.response(CELL_TYPE, label=label_token(ct[i])),
                ct[i],
            )
        )
        gen_task = "generation_unconditional" if unconditional_prompt else "generation"
        examples.append(
            Example(
                "generation",
                ps.format(gen_task, condition=cond[i], cell_type=label_token(ct[i])),
                ps.response("generation", cell=cs.sentence(i, K_GENERATE)),
            )
        )
    train = set(split.train.tolist())
    for i in split.train:
        if cond[i] != "stim":
            continue
        controls = [j for j in np.flatnonzero((ct == ct[i]) & (cond == "ctrl")) if j in train]
        if not controls:
            continue
        j = int(rng.choice(controls))
        examples.append(
            Example(
                "perturbation",
                ps.format("perturbation", cell=cs.sentence(j, K_PERTURB), perturbation=PERTURBATION),
                ps.response("perturbation", cell=cs.sentence(i, K_PERTURB)),
            )
        )
    return examples
