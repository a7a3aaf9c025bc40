"""The bad-input corpus: malformed or hostile inputs at every entry point (h5ad files, CLI arguments, planner
tool arguments, model output, knowledge files, eval suites, server requests). Each one must give a clear
error that names the input and says how to fix it: never a traceback to the user, never a hang.

Every case is bounded: subprocesses and HTTP calls carry timeouts, and the whole module runs under a
per-test alarm, so a regression that hangs fails instead of stalling CI.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_agent.errors import C2SError, InputError, PlanError

CASE_SECONDS = 120


@pytest.fixture(autouse=True)
def _bounded():
    """No case may hang: SIGALRM fails it after CASE_SECONDS."""

    def fail(*_):
        raise TimeoutError(f"bad-input case ran longer than {CASE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _h5ad(path: Path, X, var_names=None, **var) -> Path:
    X = X if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float32))
    names = var_names or [f"G{i}" for i in range(X.shape[1])]
    a = ad.AnnData(X=X, var=pd.DataFrame(var, index=pd.Index(names)))
    a.obs_names = [f"c{i}" for i in range(X.shape[0])]
    a.write_h5ad(path)
    return path


def _assert_clear(err: BaseException, *needles: str) -> None:
    msg = str(err)
    assert isinstance(err, C2SError), f"{type(err).__name__} is not a user error: {msg}"
    assert "Fix:" in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"


# ================================================================================= h5ad files (in process)
def _counts(n_cells=600, n_genes=40, seed=0):
    return np.random.default_rng(seed).poisson(2.0, (n_cells, n_genes)).astype(np.float32) + 1


def _unsampled_row(n: int) -> int:
    """A cell that inspect()'s 500-cell sample (seed 0) does not look at."""
    sampled = set(np.random.default_rng(0).choice(n, size=500, replace=False).tolist())
    return max(set(range(n)) - sampled)


def _nan_late(tmp):
    X = _counts(3000)
    X[_unsampled_row(3000), 3] = np.nan
    return _h5ad(tmp / "nan_late.h5ad", X)


def _inf(tmp):
    X = _counts(20)
    X[5, 2] = np.inf
    return _h5ad(tmp / "inf.h5ad", X)


def _neg_inf_late(tmp):
    X = _counts(3000)
    X[_unsampled_row(3000), 1] = -np.inf
    return _h5ad(tmp / "neginf_late.h5ad", X)


def _hdf5_not_anndata(tmp):
    import h5py

    path = tmp / "plain.h5ad"
    with h5py.File(path, "w") as f:
        f["numbers"] = np.arange(10)
    return path


def _header_only(tmp):
    full = tmp / "full.h5ad"
    _h5ad(full, _counts(50))
    path = tmp / "header_only.h5ad"
    path.write_bytes(full.read_bytes()[:2048])
    return path


def _bool_matrix(tmp):
    path = tmp / "bool.h5ad"
    ad.AnnData(X=np.ones((4, 3), dtype=bool)).write_h5ad(path)
    return path


def _million_empty(tmp):
    X = sp.csr_matrix((1_000_000, 20), dtype=np.float32)
    return _h5ad(tmp / "million_empty.h5ad", X)


def _million_empty_few_real(tmp):
    n = 1_000_000
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[-10:] = np.arange(1, 11) * 5  # the last 10 cells carry 5 genes each
    X = sp.csr_matrix((np.full(50, 3.0, np.float32), np.tile(np.arange(5), 10), indptr), shape=(n, 20))
    return _h5ad(tmp / "million_mostly_empty.h5ad", X)


def _ensembl_dup_symbols(tmp):
    ids = ["ENSG00000111640", "ENSG00000075624", "ENSG00000164111"]
    return _h5ad(
        tmp / "ens.h5ad", np.arange(1, 10).reshape(3, 3), var_names=ids, feature_name=["GAPDH", "GAPDH", "ANXA3"]
    )


def _layer_missing(tmp):
    return _h5ad(tmp / "ok.h5ad", _counts(5))


H5AD_CASES = [
    # (id, builder, call, needles)
    ("nan-beyond-sample", _nan_late, "prepare", ["NaN or infinite", "Fix: remove or impute"]),
    ("inf-value", _inf, "prepare", ["NaN or infinite"]),
    ("neg-inf-beyond-sample", _neg_inf_late, "prepare", ["NaN or infinite"]),
    ("hdf5-but-not-anndata", _hdf5_not_anndata, "read", ["plain.h5ad", "could not be read as AnnData"]),
    ("header-only-truncated", _header_only, "read", ["header_only.h5ad"]),
    ("bool-matrix", _bool_matrix, "prepare", ["not numbers"]),
    ("1M-empty-cells", _million_empty, "prepare", ["no non-zero values"]),
    ("1M-mostly-empty-cells", _million_empty_few_real, "prepare", ["cells have no expressed genes", "drop_empty"]),
    ("ensembl-ids-duplicate-symbols", _ensembl_dup_symbols, "prepare", ["feature_name", "same gene symbol"]),
    ("unknown-layer", _layer_missing, "prepare:counts", ["counts", "is not 'X', 'raw' or a layer"]),
]


@pytest.mark.parametrize("case, build, call, needles", H5AD_CASES, ids=[c[0] for c in H5AD_CASES])
def test_h5ad_files(tmp_path, case, build, call, needles):
    from c2s_agent.data import prepare, read

    path = build(tmp_path)
    with pytest.raises(C2SError) as err:
        if call == "read":
            read(path)
        elif call.startswith("prepare:"):
            prepare(read(path), source=call.split(":", 1)[1])
        else:
            prepare(read(path))
    _assert_clear(err.value, *needles)


# ================================================================================= CLI (subprocesses)
def _cli_cases(tmp: Path) -> list[tuple[str, list[str], list[str]]]:
    garbage = tmp / "notes.h5ad"
    garbage.write_text("cell,gene\n1,2\n")
    badyaml = tmp / "bad.yaml"
    badyaml.write_text("name: [x\n")
    notlist = tmp / "notlist.yaml"
    notlist.write_text("name: x\ntasks: reverse_transform_r2\n")
    nan = _inf(tmp)
    file_as_dir = tmp / "a_file"
    file_as_dir.write_text("x")
    return [
        ("data-info-missing-file", ["data", "info", tmp / "nope.h5ad"], ["nope.h5ad", "no such file"]),
        ("data-info-csv-as-h5ad", ["data", "info", garbage], ["notes.h5ad", "is not an HDF5"]),
        ("sentences-inf-values", ["sentences", nan, tmp / "o.h5ad"], ["NaN or infinite"]),
        ("sentences-output-not-h5ad", ["sentences", "demo", tmp / "o.csv"], ["o.csv"]),
        ("sentences-negative-top-k", ["sentences", "demo", tmp / "o.h5ad", "--top-k", "-5"], ["top_k"]),
        ("annotate-garbage-input", ["annotate", garbage, tmp / "o.h5ad"], ["notes.h5ad", "is not an HDF5"]),
        (
            "ask-missing-data",
            ["ask", "What cell types are there?", "--data", tmp / "gone.h5ad"],
            ["gone.h5ad", "no such file"],
        ),
        ("resume-unknown-run", ["resume", "no-such-run-0000"], ["no-such-run-0000"]),
        ("eval-run-invalid-yaml", ["eval", "run", badyaml], ["bad.yaml", "is not valid YAML"]),
        ("eval-run-tasks-not-list", ["eval", "run", notlist], ["notlist.yaml", "tasks"]),
        ("eval-run-missing-suite", ["eval", "run", tmp / "none.yaml"], ["none.yaml", "no such suite file"]),
        ("evaluate-missing-generated", ["evaluate", "demo", tmp / "gen.txt"], ["gen.txt"]),
        (
            "screen-unknown-program",
            ["screen", "--perturbations", "IFN-beta", "--program", "NOT_A_PROGRAM_XYZ", "--out", tmp / "scr"],
            ["NOT_A_PROGRAM_XYZ"],
        ),
        (
            "ask-runs-dir-under-a-file",
            ["ask", "How many cells per cell type?", "--data", "demo"],
            ["runs_is_a_file/runs", "Not a directory"],
        ),
        (
            "ask-runs-dir-read-only",
            ["ask", "How many cells per cell type?", "--data", "demo"],
            ["Read-only file system"],
        ),
        (
            "ask-runs-dir-disk-full",
            ["ask", "How many cells per cell type?", "--data", "demo"],
            ["could not be written", "free space"],
        ),
        ("sentences-out-disk-full", ["sentences", "demo", tmp / "full" / "o.h5ad"], ["o.h5ad", "disk is full"]),
        (
            "sentences-backed-out-disk-full",
            ["sentences", "demo", tmp / "full" / "b.h5ad", "--backed"],
            ["b.h5ad", "disk is full"],
        ),
        (
            "screen-out-read-only",
            ["screen", "--perturbations", "IFN-beta", "--n-cells", "4", "--out", tmp / "ro" / "scr"],
            ["Read-only file system"],
        ),
    ]


CLI_IDS = [
    "data-info-missing-file",
    "data-info-csv-as-h5ad",
    "sentences-inf-values",
    "sentences-output-not-h5ad",
    "sentences-negative-top-k",
    "annotate-garbage-input",
    "ask-missing-data",
    "resume-unknown-run",
    "eval-run-invalid-yaml",
    "eval-run-tasks-not-list",
    "eval-run-missing-suite",
    "evaluate-missing-generated",
    "screen-unknown-program",
    "ask-runs-dir-under-a-file",
    "ask-runs-dir-read-only",
    "ask-runs-dir-disk-full",
    "sentences-out-disk-full",
    "sentences-backed-out-disk-full",
    "screen-out-read-only",
]
MOUNTED = {
    "ask-runs-dir-read-only": "ro",
    "ask-runs-dir-disk-full": "full",
    "sentences-out-disk-full": "full",
    "sentences-backed-out-disk-full": "full",
    "screen-out-read-only": "ro",
}


def _mount(tmp: Path) -> bool:
    """A read-only bind mount (tmp/ro) and a 256 KiB tmpfs (tmp/full): real EROFS and ENOSPC, no simulation."""
    for d in ("ro", "ro_src", "full"):
        (tmp / d).mkdir()
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tmp / "full")], capture_output=True
        ).returncode
        == 0
    )
    ok = (
        ok
        and subprocess.run(
            ["mount", "--bind", "-o", "ro", str(tmp / "ro_src"), str(tmp / "ro")], capture_output=True
        ).returncode
        == 0
    )
    if ok:  # fill the tmpfs but leave room for folders
        (tmp / "full" / "filler").write_bytes(b"\0" * (256 * 1024 - 16 * 1024))
    return ok


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Run every CLI case as a user runs it (``python -m c2s_agent``), a few at a time."""
    import os

    tmp = tmp_path_factory.mktemp("cli")
    blocker = tmp / "runs_is_a_file"
    blocker.write_text("x")
    env = {
        **os.environ,
        "C2S_RUNS_DIR": str(tmp / "runs"),
        "C2S_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "C2S_THREADS": "1",
    }

    def run(case):
        name, args, _ = case
        e = dict(env)
        if name == "ask-runs-dir-under-a-file":
            e["C2S_RUNS_DIR"] = str(blocker / "runs")
        elif name.startswith("ask-runs-dir-"):
            e["C2S_RUNS_DIR"] = str(tmp / MOUNTED[name] / "runs")
        try:
            return name, subprocess.run(
                [sys.executable, "-m", "c2s_agent", *map(str, args)],
                capture_output=True,
                text=True,
                timeout=150,
                env=e,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            return name, None

    mounted = _mount(tmp)
    cases = _cli_cases(tmp)
    assert [c[0] for c in cases] == CLI_IDS
    try:
        with ThreadPoolExecutor(4) as pool:
            done = dict(pool.map(run, [c for c in cases if mounted or c[0] not in MOUNTED]))
    finally:
        for d in ("ro", "full"):
            subprocess.run(["umount", str(tmp / d)], capture_output=True)
    return {c[0]: (c, done.get(c[0], "unmounted")) for c in cases}


@pytest.mark.parametrize("case", CLI_IDS)
def test_cli(cli_results, case):
    (_, args, needles), r = cli_results[case]
    if r == "unmounted":
        pytest.skip("this machine does not allow tmpfs / read-only bind mounts")
    assert r is not None, f"c2s {args} hung"
    err = r.stderr
    assert "Traceback" not in err and "Traceback" not in r.stdout, err[-3000:]
    assert r.returncode == 2, (r.returncode, err[-3000:])
    assert "Fix:" in err, err
    flat = " ".join(err.split())
    for n in needles:
        assert n in flat, f"{n!r} not in {flat!r}"


# ================================================================================= planner tool arguments
@pytest.fixture(scope="module")
def tools():
    from c2s_agent import registry
    from c2s_agent.config import Settings

    return registry.tools(Settings(threads=1))


@pytest.fixture()
def ctx(kang, tmp_path):
    from c2s_agent.config import Settings
    from c2s_agent.tools import ToolContext

    data = tmp_path / "data"
    data.mkdir()
    return ToolContext(
        kang[:300].copy(),
        tmp_path / "run",
        Settings(threads=1, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache"),
        step_id="s1",
        data_path=data / "cells.h5ad",
    )


TOOL_CASES = [
    ("wrong-type-top-k", "cell_sentences", {"top_k": "many"}, PlanError, ["cell_sentences", "top_k"]),
    ("out-of-range-top-k", "cell_sentences", {"top_k": -1}, PlanError, ["top_k", "greater than or equal"]),
    ("list-where-str", "marker_genes", {"groupby": ["cell_type"]}, PlanError, ["groupby"]),
    ("missing-required", "ppi_neighbourhood", {}, PlanError, ["genes", "Field required"]),
    ("int-cell-type", "generate_cells", {"cell_type": 7}, PlanError, ["cell_type"]),
    ("unknown-obs-column", "marker_genes", {"groupby": "tissue_of_origin"}, InputError, ["tissue_of_origin"]),
    ("unknown-obs-value", "marker_genes", {"groupby": "cell_type", "groups": ["Neuron"]}, InputError, ["Neuron"]),
    ("unknown-cell-type", "generate_cells", {"cell_type": "Neuron", "n": 2}, InputError, ["Neuron", "not known"]),
    (
        "path-traversal",
        "evaluate_generation",
        {"generated": "../../../../etc/passwd"},
        InputError,
        ["../../../../etc/passwd", "outside"],
    ),
    (
        "absolute-path-outside",
        "evaluate_generation",
        {"generated": "/etc/hostname"},
        InputError,
        ["/etc/hostname", "outside"],
    ),
]


@pytest.mark.parametrize("case, tool, args, exc, needles", TOOL_CASES, ids=[c[0] for c in TOOL_CASES])
def test_tool_arguments(tools, ctx, case, tool, args, exc, needles):
    with pytest.raises(exc) as err:
        tools[tool].invoke(ctx, args)
    _assert_clear(err.value, *needles)


# ================================================================================= model output
@pytest.fixture(scope="module")
def model():
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(None, Settings(threads=1))


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, as an AI I cannot list genes.",
        '<|endoftext|>\x00\x01\ufffd {"genes": null}',
        "import os; os.system('rm -rf /')",
        "LYZ " * 1_000_000,
        "",
    ],
    ids=["prose", "control-chars-json", "code", "endless", "empty"],
)
def test_model_output_that_is_not_a_gene_list(model, text):
    """Model output goes through the parser and the reverse transform: junk becomes an empty or short
    sentence with its unknown words counted, endless output is cut, and nothing is ever executed."""
    from c2s_agent.models.tl import from_sentences
    from c2s_agent.sentences.parse import MAX_CHARS, parse_genes

    lookup = {g: i for i, g in enumerate(model.genes)}
    parsed = parse_genes(text, lookup)
    assert len(parsed.idx) <= min(len(lookup), MAX_CHARS)
    t0 = time.process_time()
    out = from_sentences(model, [text[:MAX_CHARS]], {"c2s_cell_type": ["B"]})
    assert out.n_obs == 1 and out.n_vars == len(model.genes)
    assert np.isfinite(out.X.toarray()).all()
    if text.startswith("LYZ"):
        assert out.X.getnnz() == 1  # one gene, however often repeated
    elif text.strip():
        assert parsed.n_unknown > 0
    assert time.process_time() - t0 < CASE_SECONDS


# ================================================================================= knowledge files
def _copy_bundled_cpdb(tmp: Path) -> Path:
    import shutil

    from c2s_agent.knowledge.sources import knowledge_dir

    dst = tmp / "cpdb"
    shutil.copytree(knowledge_dir() / "cellphonedb_v5", dst)
    return dst


def _kb_cpdb_no_symbol_column(tmp):
    from c2s_agent.knowledge import sources as S

    d = _copy_bundled_cpdb(tmp)
    g = pd.read_csv(d / "gene_input.csv").drop(columns=["hgnc_symbol"])
    g.to_csv(d / "gene_input.csv", index=False)
    return lambda: list(S.load_cellphonedb(d)), ["gene_input.csv", "hgnc_symbol"]


def _kb_cpdb_ragged_row(tmp):
    from c2s_agent.knowledge import sources as S

    d = _copy_bundled_cpdb(tmp)
    with open(d / "interaction_input.csv", "a") as f:
        f.write("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,1,2,3,4,5,6,7,8,9\n")
    return lambda: list(S.load_cellphonedb(d)), ["interaction_input.csv"]


def _kb_ppi_ragged(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "ppi.csv"
    p.write_text("symbol_a,symbol_b,n_records\nMYC,MAX,3\nSTAT1,STAT2,2,extra,fields\n")
    return lambda: list(S.load_biogrid(p)), ["ppi.csv"]


def _kb_ppi_bad_counts(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "ppi.csv"
    p.write_text("symbol_a,symbol_b,n_records\nMYC,MAX,3\nSTAT1,STAT2,many\n")
    return lambda: list(S.load_biogrid(p)), ["ppi.csv", "n_records"]


def _kb_gmt_binary(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "sets.gmt"
    p.write_bytes(b"SET\tdesc\tCD3D\n\xff\xfe\x00\x81garbage\tx\tLYZ\n")
    return lambda: list(S.load_gmt(p)), ["sets.gmt"]


def _kb_ontology_missing_label(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "cl.json"
    p.write_text(json.dumps({"CL:0000001": {"description": "a cell", "ancestors": {}}}))
    return lambda: list(S.load_cell_ontology(p)), ["cl.json", "label"]


def _kb_ontology_list(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "cl.json"
    p.write_text(json.dumps([{"id": "CL:0000001"}]))
    return lambda: list(S.load_cell_ontology(p)), ["cl.json"]


def _kb_ontology_tsv_columns(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "cl.tsv"
    p.write_text("id\tname\nCL:1\tT cell\n")
    return lambda: list(S.load_cell_ontology(p)), ["cl.tsv"]


def _kb_gene_info_columns(tmp):
    from c2s_agent.knowledge import sources as S

    p = tmp / "uniprot.tsv"
    p.write_text("Entry\tProtein\nP1\tX\n")
    return lambda: S.load_gene_info(p), ["uniprot.tsv", "Gene names"]


KB_CASES = [
    _kb_cpdb_no_symbol_column,
    _kb_cpdb_ragged_row,
    _kb_ppi_ragged,
    _kb_ppi_bad_counts,
    _kb_gmt_binary,
    _kb_ontology_missing_label,
    _kb_ontology_list,
    _kb_ontology_tsv_columns,
    _kb_gene_info_columns,
]


@pytest.mark.parametrize("build", KB_CASES, ids=[f.__name__[4:] for f in KB_CASES])
def test_knowledge_files_with_broken_rows(tmp_path, build):
    call, needles = build(tmp_path)
    with pytest.raises(C2SError) as err:
        call()
    _assert_clear(err.value, *needles)


# ================================================================================= eval suites
SUITE_CASES = [
    ("empty-file", "", ["must be a mapping"]),
    ("tasks-not-a-list", "name: x\ntasks: reverse_transform_r2\n", ["tasks"]),
    ("params-not-mapping", "name: x\ntasks: [{task: reverse_transform_r2, params: 5}]\n", ["params"]),
    ("binary-garbage", b"\x89PNG\r\n\x1a\n\x00\x00\xff", ["suite.yaml"]),
    ("yaml-python-tag", "name: !!python/object/apply:os.system ['echo pwned']\ntasks: []\n", ["is not valid YAML"]),
    ("datasets-not-list", "name: x\ntasks: [{task: reverse_transform_r2, datasets: 3}]\n", ["datasets"]),
]


@pytest.mark.parametrize("case, text, needles", SUITE_CASES, ids=[c[0] for c in SUITE_CASES])
def test_eval_suite_errors(tmp_path, case, text, needles):
    from c2s_agent.evaluation.suite import load_suite

    p = tmp_path / "suite.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as err:
        load_suite(p)
    _assert_clear(err.value, "suite.yaml", *needles)


# ================================================================================= server requests
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model):
    import uvicorn

    from c2s_agent.models.server import create_app

    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(model, max_body_bytes=100_000), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(400):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", port
    srv.should_exit = True
    thread.join(timeout=15)


def _raw(port: int, data: bytes, timeout: float = 20) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
                if b"\r\n\r\n" in b"".join(chunks) and len(b"".join(chunks)) > 12:
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
                    if length and len(body) >= int(length[0].split(b":")[1]):
                        break
        except socket.timeout:
            pass
    return b"".join(chunks)


def _status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1") else -1


SERVER_CASES = [
    ("malformed-json", "/v1/completions", b'{"prompt": "x", ', 422, "JSON decode error"),
    ("json-not-object", "/v1/completions", b"[1, 2, 3]", 422, "body"),
    ("wrong-field-type", "/v1/embeddings", json.dumps({"input": 12345}).encode(), 422, "input"),
    ("too-many-inputs", "/v1/c2s/embed", json.dumps({"sentences": ["CD74"] * 600}).encode(), 422, "sentences"),
    ("token-id-prompt", "/v1/completions", json.dumps({"prompt": [[1, 2, 3]]}).encode(), 422, "prompt"),
    (
        "unknown-perturbation",
        "/v1/c2s/perturb",
        json.dumps({"sentences": ["CD74 LYZ"], "perturbation": "rm -rf /"}).encode(),
        400,
        "not known to this model",
    ),
    ("oversized-declared", "/v1/completions", b'{"prompt": "' + b"A" * 150_000 + b'"}', 413, "exceeds"),
]


@pytest.mark.parametrize("case, path, body, status, needle", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_requests(server, case, path, body, status, needle):
    import httpx

    url, _ = server
    r = httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text[:500]
    assert needle in r.text
    assert "Traceback" not in r.text


def test_server_oversized_chunked_body_without_length(server):
    """A body streamed without Content-Length cannot slip past the size limit."""
    import httpx

    url, _ = server

    def chunks():
        for _ in range(40):
            yield b"A" * 10_000

    r = httpx.post(url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code in (411, 413), r.text[:300]
    assert "Content-Length" in r.text or "exceeds" in r.text


@pytest.mark.parametrize("header", [b"Content-Length: lots", b"Content-Length: -5"], ids=["non-numeric", "negative"])
def test_server_bad_content_length(server, header):
    _, port = server
    resp = _raw(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n{}")
    assert _status(resp) == 400 or resp == b"", resp[:300]
    assert b"Traceback" not in resp


def test_server_slow_loris_does_not_block_others(server):
    """Clients that send headers or bodies a byte at a time hold only their own connection: others are served."""
    import httpx

    url, port = server
    socks = []
    try:
        for i in range(16):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                if i % 2
                else b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"pro'
            )
            socks.append(s)
        for _ in range(3):
            for s in socks:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass
            r = httpx.get(url + "/v1/models", timeout=10)
            assert r.status_code == 200
            time.sleep(0.2)
        r = httpx.post(url + "/v1/embeddings", json={"input": "Cell sentence: CD74 LYZ ."}, timeout=30)
        assert r.status_code == 200
    finally:
        for s in socks:
            s.close()
