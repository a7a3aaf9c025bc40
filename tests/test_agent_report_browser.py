"""The HTML report in a real headless Chromium (Debian's package): it renders, every image loads, every in-page
evidence link reaches an element and every file link names a file of the run. Also the report's contents: the
cells by predicted type, ranking and dot plots, provenance, cost and limitations."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c2s_agent.agent import runs
from c2s_agent.config import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUESTION = (
    "Annotate the cells with the C2S model, then find which ligand-receptor interactions connect monocytes "
    "to T cells after stimulation"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const local = links.filter(h => h.startsWith('#'));
  const pre = document.createElement('pre'); pre.id = 'c2s-check';
  pre.textContent = JSON.stringify({
    images: imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth})),
    local: local.length, broken: local.filter(h => !document.getElementById(decodeURIComponent(h.slice(1)))),
    files: links.filter(h => !h.startsWith('#') && !/^[a-z]+:/.test(h)),
    h1: (document.querySelector('h1') || {}).textContent, height: document.body.scrollHeight});
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, kang):
    """A hypothesis-mode run (annotate -> ligand-receptor -> hypotheses) on 300 Kang cells, stratified."""
    folder = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    keep = np.sort(
        np.concatenate(
            [
                rng.choice(
                    np.flatnonzero((kang.obs.cell_type == ct).to_numpy()),
                    min(40, int((kang.obs.cell_type == ct).sum())),
                    replace=False,
                )
                for ct in kang.obs.cell_type.unique()
            ]
        )
    )
    path = folder / "kang_subset.h5ad"
    kang[keep].copy().write_h5ad(path)
    return runs.ask(QUESTION, str(path), Settings(runs_dir=folder / "runs"), hypothesize=True)


def test_report_contents(run):
    assert run["run"]["status"] == "done"
    tools = [r.tool for r in run["results"].values()]
    assert tools[:2] == ["annotate_cells", "score_ligand_receptor"]
    md = (run["run_dir"] / "report.md").read_text()
    for section in (
        "## Answer",
        "## Hypotheses",
        "## Figures",
        "## Plan",
        "## Steps",
        "## Provenance",
        "## Cost",
        "## Limitations",
    ):
        assert section in md
    assert "coloured by the C2S-predicted cell type" in md and "UMAP (obsm['X_umap_2d'])" in md
    assert "report_hypotheses.png" in md and "ligand_receptor_dotplot.png" in md
    cost = md.split("## Cost")[1].split("## Limitations")[0]
    calls = int(re.search(r"model and planner calls \| (\d+)", cost).group(1))
    assert calls >= 2 and re.search(r"tokens \(in / out\) \| [1-9]\d* /", cost)
    prov = md.split("## Provenance")[1].split("## Cost")[0]
    assert "[s1](#step-s1) | annotate_cells" in prov and "ledger.sqlite: step s2, seq 0" in prov


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs Debian's chromium package)")
def test_html_renders_in_headless_chromium(run, tmp_path):
    rd = Path(run["run_dir"])
    html = (rd / "report.html").read_text()
    page = rd / "report_check.html"  # next to the report, so relative file links resolve the same way
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    try:
        out = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        page.unlink()
    m = re.search(r'<pre id="c2s-check">(.*?)</pre>', out.stdout, re.S)
    assert m, f"Chromium did not run the check: {out.stderr[-2000:]}"
    import html as html_lib

    check = json.loads(html_lib.unescape(m.group(1)))
    assert check["h1"] == QUESTION and check["height"] > 2000
    assert len(check["images"]) >= 4, check["images"]  # predicted types, hypotheses, dot plot, annotation plots
    assert all(i["ok"] for i in check["images"]), [i for i in check["images"] if not i["ok"]]
    assert check["local"] >= 5 and check["broken"] == []  # steps, provenance and each hypothesis's evidence
    assert check["files"] and all((rd / f).is_file() for f in check["files"]), check["files"]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (rd / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=180,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
