"""Ligand-receptor scoring on the bundled Kang 2018 IFN-beta data (monocytes -> T cells, ctrl vs stim)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from c2s_agent.errors import InputError
from c2s_agent.knowledge.lr import score_ligand_receptor

MONO = ["CD14 Mono", "CD16 Mono"]
TCELLS = ["CD4 Naive T", "CD4 Memory T", "CD8 T", "T activated"]


@pytest.fixture(scope="module")
def lr(kang):
    adata = kang.copy()
    table = score_ligand_receptor(adata, "cell_type", MONO, TCELLS, condition="condition", n_perms=1000, seed=0)
    return adata, table


@pytest.fixture(scope="module")
def lognorm(kang):
    from c2s_agent.data import prepare

    return prepare(kang)


def _group_mean(lognorm, genes, groups, cond, linear=False):
    cells = (lognorm.obs.cell_type.isin(groups) & (lognorm.obs.condition == cond)).to_numpy()
    X = lognorm[cells][:, genes].X
    X = X.toarray() if hasattr(X, "toarray") else X
    X = np.expm1(X) if linear else X
    return X.mean(0), (X > 0).mean(0)


def test_table_and_uns(lr):
    adata, table = lr
    assert adata.uns["c2s_lr"]["table"] is not None and adata.uns["c2s_lr"]["params"]["n_perms"] == 1000
    assert set(table.condition) == {"ctrl", "stim"} and table.pair.nunique() == len(table) // 2
    assert table.pvalue.between(0, 1).all() and (table.score[~(table.ligand_frac >= 0.1)] == 0).all()
    top = table[table["rank"] == 1]
    assert len(top) == 2 and top.significant.all()


def test_scores_match_a_direct_computation(lr, lognorm):
    """Means of the ligand in monocytes and of the receptor in T cells; complexes take the weakest subunit."""
    _, table = lr
    row = table[(table.condition == "stim") & (table.pair == "CD58 -> CD2")].iloc[0]
    (lm,), (lf,) = _group_mean(lognorm, ["CD58"], MONO, "stim")
    (rm,), (rf,) = _group_mean(lognorm, ["CD2"], TCELLS, "stim")
    assert row.ligand_mean == pytest.approx(lm, rel=1e-4) and row.receptor_frac == pytest.approx(rf, rel=1e-4)
    assert row.score == pytest.approx((lm + rm) / 2, rel=1e-4) and row.pvalue < 0.05
    cx = table[(table.condition == "stim") & table.receptor_genes.str.contains(r"\+")].iloc[0]
    subunits = cx.receptor_genes.split("+")
    means, fracs = _group_mean(lognorm, subunits, TCELLS, "stim")
    assert cx.receptor_mean == pytest.approx(means.min(), rel=1e-4, abs=1e-7)
    assert cx.receptor_frac == pytest.approx(fracs.min(), rel=1e-4, abs=1e-7)


def test_stimulated_top_pairs_include_interferon_induced_ligands(lr, lognorm):
    """The data decide what is induced: ligands whose mean monocyte expression (CP10k) at least doubles with
    IFN-beta."""
    _, table = lr
    top_stim = table[(table.condition == "stim") & table.significant].nsmallest(10, "rank")
    ligand_genes = sorted({g for gs in top_stim.ligand_genes for g in gs.split("+")})
    stim, _ = _group_mean(lognorm, ligand_genes, MONO, "stim", linear=True)
    ctrl, _ = _group_mean(lognorm, ligand_genes, MONO, "ctrl", linear=True)
    induced = [g for g, s, c in zip(ligand_genes, stim, ctrl) if s >= 2 * c]
    assert induced, f"no IFN-induced ligand among the stimulated top pairs {top_stim.pair.tolist()}"
    # and such a pair ranks higher (or only appears) in the stimulated condition
    pair = top_stim[top_stim.ligand_genes.str.contains(induced[0])].iloc[0].pair
    ctrl_row = table[(table.condition == "ctrl") & (table.pair == pair)].iloc[0]
    stim_row = top_stim[top_stim.pair == pair].iloc[0]
    assert stim_row.score > ctrl_row.score


def test_permutation_pvalues_reproducible(kang):
    a1 = score_ligand_receptor(
        kang.copy(), "cell_type", MONO, TCELLS, condition="condition", condition_value="stim", n_perms=200, seed=3
    )
    a2 = score_ligand_receptor(
        kang.copy(), "cell_type", MONO, TCELLS, condition="condition", condition_value="stim", n_perms=200, seed=3
    )
    pd.testing.assert_frame_equal(a1, a2)
    assert set(a1.condition) == {"stim"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"groupby": "celltype"}, "groupby 'celltype': is not a column of adata.obs"),
        ({"source": "Monocytes"}, "group 'Monocytes': is not a value of obs['cell_type']"),
        ({"condition_value": "stim"}, "condition_value: was given without a condition column"),
        (
            {"condition": "condition", "condition_value": "IFN"},
            "condition_value 'IFN': is not a value of obs['condition']",
        ),
        ({"n_perms": 0}, "n_perms: must be >= 1"),
        (
            {"condition": "condition", "source": "Eryth"},
            "condition 'ctrl': has no cells of the source or the target group",
        ),
    ],
)
def test_bad_inputs(kang, kwargs, message):
    args = {"groupby": "cell_type", "source": MONO, "target": TCELLS, "n_perms": 10} | kwargs
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        score_ligand_receptor(kang, args.pop("groupby"), args.pop("source"), args.pop("target"), **args)


def test_communication_counts_and_tops_the_significant_pairs_per_condition(kang):
    from c2s_agent import tl

    res = tl.ligand_receptor(kang.copy(), ["CD14 Mono"], ["NK"], condition="condition", n_perms=50)
    sig = res.table[res.table.significant]
    assert res.n_significant() == sig.groupby("condition").size().to_dict() and res.n_significant()["stim"] >= 3
    top = res.top(3)
    assert top.groupby("condition").size().to_dict() == {"ctrl": 3, "stim": 3} and top.significant.all()
    assert top[top.condition == "stim"]["rank"].tolist() == [1, 2, 3]
    assert "CXCL10 -> CXCR3" in top[top.condition == "stim"].pair.tolist()  # IFN-beta induces CXCL10 in monocytes


def test_tool_writes_table_plot_and_uns(kang, settings, tmp_path):
    from c2s_agent import registry
    from c2s_agent.data import prepare
    from c2s_agent.tools import ToolContext

    adata = prepare(kang)
    tool = registry.tools(settings)["score_ligand_receptor"]
    ctx = ToolContext(adata, tmp_path, settings)
    res = tool.invoke(
        ctx,
        {
            "groupby": "cell_type",
            "source": MONO,
            "target": TCELLS,
            "condition_column": "condition",
            "n_perms": 200,
            "top": 10,
        },
    )
    assert "c2s_lr" in adata.uns and tool.slots("produces", {}) == ["uns:c2s_lr"]
    kinds = {a.kind for a in res.artefacts}
    assert kinds == {"table", "plot"} and all((tmp_path / a.path).stat().st_size > 1000 for a in res.artefacts)
    assert res.output.n_significant["stim"] >= 1 and res.output.top_pairs[0].pvalue < 0.05
    assert "stim:" in res.evidence and "->" in res.evidence
    assert np.isfinite([p.score for p in res.output.top_pairs]).all()


def test_tool_groups_by_predicted_labels_after_annotation(kang, tmp_path):
    """With no groupby the tool uses obs['c2s_cell_type'] (written by annotate_cells) when present, else the
    data's cell type column."""
    from c2s_agent import registry
    from c2s_agent.config import Settings
    from c2s_agent.tools import ToolContext

    tool = registry.tools(Settings())["score_ligand_receptor"]
    adata = kang.copy()
    args = {"source": ["CD14 Mono"], "target": ["NK"], "n_perms": 10}
    res = tool.invoke(ToolContext(adata, tmp_path, Settings(runs_dir=tmp_path), step_id="a"), args)
    assert adata.uns["c2s_lr"]["params"]["groupby"] == "cell_type" and "obs['cell_type']" in res.evidence
    adata.obs["c2s_cell_type"] = adata.obs.cell_type.astype(str).replace({"CD16 Mono": "CD14 Mono"})  # a prediction
    res = tool.invoke(ToolContext(adata, tmp_path, Settings(runs_dir=tmp_path), step_id="b"), {**args, "source": MONO})
    table = adata.uns["c2s_lr"]["table"]
    assert adata.uns["c2s_lr"]["params"]["groupby"] == "c2s_cell_type" and "predicted by the C2S model" in res.evidence
    assert (table.n_source_cells == int((kang.obs.cell_type.isin(MONO)).sum())).all()
    assert "left out: CD16 Mono" in res.evidence  # planned before the prediction, never predicted
    del adata.obs["c2s_cell_type"], adata.obs["cell_type"]
    with pytest.raises(InputError, match="no cell type column"):
        tool.invoke(ToolContext(adata, tmp_path, Settings(runs_dir=tmp_path), step_id="c"), args)
