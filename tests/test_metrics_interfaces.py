"""The metrics through every door: plugin registry, a third-party encoder hook, the agent tool, the CLI, and
the C2S model's own embedding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from c2s_agent import hookimpl, plugins, registry
from c2s_agent.config import Settings
from c2s_agent.errors import InputError
from c2s_agent.metrics import ReferenceEncoder, evaluate_generation, get_encoder
from c2s_agent.registry import EncoderFactory
from c2s_agent.tools import ToolContext


def c2s(*args):
    return subprocess.run(
        [sys.executable, "-m", "c2s_agent", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def split(kang, tmp_path_factory):
    """Kang cells minus half of the stimulated CD14 monocytes, and that half saved as a 'generated' file."""
    mono_stim = np.flatnonzero(((kang.obs.cell_type == "CD14 Mono") & (kang.obs.condition == "stim")).to_numpy())
    held = np.zeros(kang.n_obs, bool)
    held[mono_stim[::2]] = True
    gen = kang[held].copy()
    gen.obs["c2s_cell_type"], gen.obs["c2s_condition"] = "CD14 Mono", "stim"
    path = tmp_path_factory.mktemp("gen") / "generated_cells.h5ad"
    gen.write_h5ad(path)
    return kang[~held].copy(), path


def test_builtin_encoders_and_tool_are_registered(settings):
    encoders = registry.encoders(settings)
    assert {"pca", "c2s"} <= set(encoders)
    assert encoders["pca"].plugin == "c2s_builtins.metrics_plugin"
    assert isinstance(get_encoder("pca", settings), ReferenceEncoder)
    tool = registry.tools(settings)["evaluate_generation"]
    assert tool.requires == ("file:generated_cells.h5ad",) and tool.produces == ("uns:c2s_generation_metrics",)


class SmallPCA:
    """A third-party plugin registering its own encoder."""

    @hookimpl
    def register_encoders(self, register):
        register(EncoderFactory("pca10", lambda settings=None: ReferenceEncoder(n_comps=10)))


def test_third_party_encoder_through_the_hook(kang, settings):
    plugins.pm.register(SmallPCA(), name="small_pca")
    try:
        enc = get_encoder("pca10", settings)
        mono = kang[kang.obs.cell_type == "CD14 Mono"]
        res = evaluate_generation(mono[::2], mono[1::2], encoder=enc, metrics=["scfid"], reference=kang, n_boot=0)
        assert res.real_embedding.shape[1] == 10 and res.metrics["scfid"].value < 10
    finally:
        plugins.pm.unregister(name="small_pca")


def test_generation_metrics_match_the_real_cells_and_write_uns(split):
    from c2s_agent import tl
    from c2s_agent.data import prepare, read

    rest, path = split
    adata = prepare(rest)
    res = tl.generation_metrics(adata, read(path), metrics=["scfid"], n_boot=0)
    assert res.real == {"cell_type": "CD14 Mono", "condition": "stim"}  # the generated cells' requested labels
    assert res.result.notes[0] == f"real cells selected to match the generated cells: {res.real}"
    stored = json.loads(adata.uns["c2s_generation_metrics"])
    assert stored["n_real"] == 151 and stored["n_generated"] == 152
    assert stored["metrics"]["scfid"]["value"] == pytest.approx(res.result.metrics["scfid"].value)
    every = tl.generation_metrics(adata, read(path), {"cell_type": "CD14 Mono"}, metrics=["scfid"], n_boot=0)
    assert every.real == {"cell_type": "CD14 Mono"} and len(every.result.real_embedding) > 151
    assert not any("selected to match" in n for n in every.result.notes)


def test_tool_evaluates_a_generated_file(split, tmp_path):
    from c2s_agent.data import prepare

    rest, path = split
    adata = prepare(rest)
    tool = registry.tools()["evaluate_generation"]
    ctx = ToolContext(adata, tmp_path, Settings(), step_id="s2")
    import shutil

    shutil.copy(path, tmp_path / "generated_cells.h5ad")  # planner paths are confined to the run and data dirs
    res = tool.invoke(
        ctx,
        {
            "generated": "generated_cells.h5ad",
            "control_column": "condition",
            "control_value": "ctrl",
            "metrics": ["scfid", "mmd", "lfc_pearson"],
            "n_boot": 20,
        },
    )
    out = res.output
    assert out.n_generated == 152 and out.n_real == 151  # real cells picked to match: stimulated CD14 Mono
    assert "cell_type" in out.notes[0] and "'condition': 'stim'" in out.notes[0]
    assert out.metrics["lfc_pearson"]["value"] > 0.9
    lo, hi = out.metrics["scfid"]["interval"]
    assert lo <= out.metrics["scfid"]["value"] <= hi
    kinds = sorted(a.kind for a in res.artefacts)
    assert kinds == ["plot", "plot", "table"]
    assert all((tmp_path / a.path).stat().st_size > 200 for a in res.artefacts)
    assert json.loads(adata.uns["c2s_generation_metrics"])["metrics"]["mmd"]["value"] == out.metrics["mmd"]["value"]
    assert "scfid" in res.evidence and "152 generated cells" in res.evidence
    with pytest.raises(InputError, match="neither a file nor a step"):
        tool.invoke(ctx, {"generated": "missing_step"})
    # the output of an earlier generate_cells step, found by its step id or as the run's latest generated cells
    shutil.copy(path, tmp_path / "artefacts" / "s1_generated_cells.h5ad")
    for ref in ("s1", None):
        again = tool.invoke(
            ToolContext(adata, tmp_path, Settings(), step_id="s3"),
            {"generated": ref, "metrics": ["scfid"], "n_boot": 0},
        )
        assert again.output.metrics["scfid"]["value"] == pytest.approx(out.metrics["scfid"]["value"], rel=1e-9)
    with pytest.raises(InputError, match="obs has no column 'tissue'"):
        tool.invoke(ctx, {"generated": "generated_cells.h5ad", "real_column": "tissue", "real_value": "x"})


def test_cli_json_and_errors(split, tmp_path):
    _, path = split
    r = c2s(
        "evaluate",
        "demo",
        path,
        "--real-where",
        "cell_type=CD14 Mono;condition=stim",
        "--control-where",
        "cell_type=CD14 Mono;condition=ctrl",
        "--metrics",
        "scfid,energy,lfc_kendall",
        "--n-boot",
        20,
        "--json",
        "--save-encoder",
        tmp_path / "enc",
        "--plots",
        tmp_path / "plots",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out["metrics"]) == ["scfid", "energy", "lfc_kendall"]
    assert out["n_generated"] == 152 and out["n_real"] == 303  # the demo file still holds the 'generated' half
    for m in out["metrics"].values():
        assert m["interval"][0] <= m["value"] <= m["interval"][1]
    assert (tmp_path / "enc" / "manifest.json").is_file() and (
        tmp_path / "plots" / "generation_embedding.png"
    ).is_file()
    again = c2s(
        "evaluate",
        "demo",
        path,
        "--real-where",
        "cell_type=CD14 Mono;condition=stim",
        "--metrics",
        "scfid",
        "--n-boot",
        0,
        "--json",
        "--encoder-path",
        tmp_path / "enc",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["metrics"]["scfid"]["value"] == pytest.approx(
        out["metrics"]["scfid"]["value"], rel=1e-9
    )
    bad = c2s("evaluate", "demo", path, "--metrics", "fid")
    assert bad.returncode == 2 and "metrics: ['fid'] are not known" in bad.stderr
    bad = c2s("evaluate", "demo", path, "--real-where", "cell_type")
    assert bad.returncode == 2 and "is not of the form COLUMN=VALUE" in bad.stderr


def test_c2s_encoder_separates_types(kang, settings):
    from c2s_agent.errors import ModelError

    enc = get_encoder("c2s", settings)
    try:
        enc.model
    except (ImportError, ModelError) as exc:
        pytest.skip(f"the C2S model is not available here: {exc}")
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    picks = np.concatenate(
        [
            rng.choice(np.flatnonzero((kang.obs.cell_type == t).to_numpy()), 60, replace=False)
            for t in ("CD14 Mono", "B")
        ]
    )
    cells = kang[picks]
    emb = enc.encode(cells)
    assert emb.shape[0] == 120 and emb.ndim == 2
    mono_a, mono_b, b_cells = emb[:30], emb[30:60], emb[60:90]
    res_same = evaluate_generation(cells[:30], cells[30:60], encoder=enc, metrics=["scfid", "mmd"], n_boot=0)
    res_diff = evaluate_generation(cells[:30], cells[60:90], encoder=enc, metrics=["scfid", "mmd"], n_boot=0)
    assert res_same.metrics["scfid"].value < 0.25 * res_diff.metrics["scfid"].value
    assert res_same.metrics["mmd"].value < res_diff.metrics["mmd"].value
    assert mono_a.shape == mono_b.shape == b_cells.shape


def test_cells_generated_by_the_model_are_evaluated_as_sentences(kang, settings):
    from c2s_agent.errors import ModelError

    try:
        from c2s_agent.models import tl

        generated = tl.generate_cells("CD14 Mono", 40, condition="ctrl", seed=0, settings=settings)
    except (ImportError, ModelError) as exc:
        pytest.skip(f"the C2S model is not available here: {exc}")
    assert "c2s_sentence" in generated.obs
    mono = kang[((kang.obs.cell_type == "CD14 Mono") & (kang.obs.condition == "ctrl")).to_numpy()]
    nk = kang[(kang.obs.cell_type == "NK").to_numpy()]
    enc = ReferenceEncoder().fit(kang)
    near = evaluate_generation(mono, generated, encoder=enc, metrics=["scfid", "energy"], n_boot=0)
    far = evaluate_generation(nk, generated, encoder=enc, metrics=["scfid", "energy"], n_boot=0)
    assert any("turned into top-" in n for n in near.notes)  # real cells matched to the sentence representation
    assert near.metrics["scfid"].value < far.metrics["scfid"].value
    assert near.metrics["energy"].value < far.metrics["energy"].value
