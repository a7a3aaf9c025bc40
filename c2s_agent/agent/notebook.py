"""The agent from Python and Jupyter: ``c2s.ask(adata, question) -> Run``, ``run.ask(follow_up)``, ``c2s.runs()``
and ``c2s.Run.load(id)``. A :class:`Run` reads everything from its run directory (plan, ledger, artefacts,
report), so a run reopened days later looks the same as when it finished."""

from __future__ import annotations

import json
import re
import sys
from functools import cached_property
from pathlib import Path

from . import runs as _runs
from .session import Session


def _settings(settings=None):
    from ..config import Settings

    return settings if settings is not None else Settings()


def _approve_level(approve) -> str | None:
    return "high" if approve is True else (approve or None)


def print_progress(event: str, info: dict) -> None:
    """Default progress: one line per plan, step and re-plan, to stderr."""
    if event == "plan":
        plan = info["plan"]
        steps = ", ".join(f"{s.id} {s.tool}" for s in plan.steps) or "no step"
        print(f"plan ({plan.planner}): {steps}", file=sys.stderr)
    elif event == "step_done":
        print(f"done {info['step'].id} {info['step'].tool} ({info['result'].duration_s:.1f} s)", file=sys.stderr)
    elif event == "step_failed":
        print(f"failed {info['step'].id} {info['step'].tool}: {info['error']}", file=sys.stderr)
    elif event == "replan":
        print(f"re-planned: {info['note']}", file=sys.stderr)


def ask_on_stdin(request: dict) -> dict | None:
    """Answer an approval pause with ``input()`` (works in a terminal and in Jupyter): accept, skip, edit (new
    arguments as JSON) or later (the run pauses; ``run.resume()`` continues it)."""
    if request.get("problem"):
        print(request["problem"], file=sys.stderr)
    print(
        f"Approve {request['step']} {request['tool']} (cost {request['cost']}) with {json.dumps(request['args'])}?",
        file=sys.stderr,
    )
    choice = input("accept / edit / skip / later [accept]: ").strip().lower() or "accept"
    if choice.startswith("l"):
        return None
    if choice.startswith("e"):
        return {"action": "edit", "args": json.loads(input("arguments (JSON): "))}
    return {"action": "skip" if choice.startswith("s") else "accept"}


def _options(progress, approve, approver, **rest) -> dict:
    progress = None if progress is False else (progress or print_progress)
    level = _approve_level(approve)
    return {"progress": progress, "approve": level, "approver": approver or (ask_on_stdin if level else None), **rest}


def ask(
    data,
    question: str,
    *,
    planner: str | None = None,
    hypothesize: bool = False,
    approve=None,
    approver=None,
    progress=None,
    settings=None,
    chat_model=None,
) -> Run:
    """Ask ``question`` of ``data`` (an AnnData, a path to an .h5ad, or a demo name such as ``"demo"``) and return
    the :class:`Run`. An AnnData gets the run's results in its slots (``obs["c2s_cell_type"]``, ``uns[...]``), as
    the ``tl`` functions do. ``approve=True`` (or ``"medium"``) pauses before expensive steps and asks
    ``approver(request)`` (default: ``input()``); ``progress=False`` silences the progress lines."""
    settings = _settings(settings)
    session = (
        Session(settings, data=str(data), adata=None) if isinstance(data, str | Path) else Session(settings, adata=data)
    )
    out = session.ask(
        question,
        **_options(progress, approve, approver, planner_name=planner, hypothesize=hypothesize, chat_model=chat_model),
    )
    return Run(out["run_id"], settings, session)


def runs(settings=None) -> list[Run]:
    """Every run in the runs directory (``C2S_RUNS_DIR``), newest first."""
    settings = _settings(settings)
    return [Run(r["id"], settings) for r in _runs.list_runs(settings)]


class Run:
    """One run (a question, or a turn of a session): plan, steps, tables, hypotheses, figures, report and paths,
    all read from its run directory; ``ask`` puts a follow-up question in the same session."""

    def __init__(self, run_id: str, settings=None, session: Session | None = None):
        self.settings = _settings(settings)
        self.run_dir, manifest = _runs.load_run(self.settings, run_id)
        self.id = manifest.id
        self._session = session

    @classmethod
    def load(cls, run_id: str, settings=None) -> Run:
        """Reopen a past run by id (``c2s.runs()`` lists them)."""
        return cls(run_id, settings)

    @property
    def manifest(self) -> dict:
        """``run.json``: question, data, planner, status, session, timings, versions."""
        return json.loads((self.run_dir / "run.json").read_text())

    @property
    def question(self) -> str:
        return self.manifest["question"]

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session.open(self.settings, self.id)
        return self._session

    @property
    def plan(self):
        """The plan as it ran (:class:`~c2s_agent.agent.plan.Plan`), or None before planning."""
        from .plan import Plan

        path = self.run_dir / "plan.json"
        return Plan.model_validate_json(path.read_text()) if path.exists() else None

    @property
    def steps(self) -> list:
        """The finished steps (:class:`~c2s_agent.tools.StepResult`: tool, arguments, output, evidence, artefacts)."""
        from .ledger import Ledger

        ledger = Ledger(self.run_dir / "ledger.sqlite", self.id)
        try:
            return ledger.results()
        finally:
            ledger.close()

    @property
    def tables(self) -> dict:
        """The steps' tables as DataFrames, keyed by file name without ``.csv`` (e.g. ``"s1_markers"``)."""
        import pandas as pd

        return {
            Path(a.path).stem: pd.read_csv(self.run_dir / a.path, index_col=0)
            for r in self.steps
            for a in r.artefacts
            if a.kind == "table" and (self.run_dir / a.path).exists()
        }

    @property
    def hypotheses(self) -> list:
        """Ranked hypotheses (hypothesis mode), else []."""
        from ..tools import Hypothesis

        path = self.run_dir / "hypotheses.json"
        return [Hypothesis.model_validate(h) for h in json.loads(path.read_text())] if path.exists() else []

    @property
    def figures(self) -> list[Path]:
        """The PNG plots of the steps and the report."""
        return sorted((self.run_dir / "artefacts").glob("*.png"))

    @property
    def paths(self) -> dict[str, Path]:
        d = self.run_dir
        return {
            "run_dir": d,
            "report_html": d / "report.html",
            "report_md": d / "report.md",
            "plan": d / "plan.json",
            "ledger": d / "ledger.sqlite",
            "artefacts": d / "artefacts",
            "slots": d / "slots",
        }

    @property
    def report(self) -> str:
        """The report as Markdown ('' before it is written)."""
        path = self.run_dir / "report.md"
        return path.read_text() if path.exists() else ""

    @property
    def adata(self):
        """The data with every slot the session's turns added up to the latest: your AnnData if you gave one, else
        the working copy (rebuilt from the input and the saved slots when the run was reopened)."""
        s = self.session
        if s.adata is not None:
            return s.adata
        if s.at is None:
            return _runs.working_data(self.settings, self.id)
        return s.working

    @property
    def turns(self) -> list[Run]:
        """The runs of this run's session, in order."""
        return [Run(t["id"], self.settings, self.session) for t in self.session.turns()]

    def ask(
        self,
        question: str,
        *,
        adata=None,
        hypothesize: bool = False,
        approve=None,
        approver=None,
        progress=None,
        chat_model=None,
    ) -> Run:
        """A follow-up question in this run's session. It starts from the data state the session's turns left and
        may refer to them ("those genes", "now the same for the B cells"). A session asked of an AnnData in
        memory and reopened in a new process needs it again: ``adata=``."""
        s = self.session
        if adata is not None:
            s.adata = adata
        out = s.ask(question, **_options(progress, approve, approver, hypothesize=hypothesize, chat_model=chat_model))
        return Run(out["run_id"], self.settings, s)

    def resume(self, *, adata=None, approve=None, approver=None, progress=None) -> Run:
        """Continue this session's unfinished turn (after a crash, or a pause for approval)."""
        s = self.session
        if adata is not None:
            s.adata = adata
        options = _options(progress, approve, approver)
        options.pop("approve")
        out = s.resume(**options)
        return Run(out["run_id"], self.settings, s)

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Run({self.id!r}, status={m['status']!r}, turn={m.get('turn', 1)}, question={m['question']!r}, "
            f"report={str(self.paths['report_html'])!r})"
        )

    @cached_property
    def _css(self) -> str:
        from .report import CSS

        def scope(m):
            sels = ", ".join(
                ".c2s-report" if s.strip() == "body" else f".c2s-report {s.strip()}" for s in m.group(2).split(",")
            )
            return f"{m.group(1)}{sels}{{"

        return re.sub(r"(^|})\s*([^{}]+)\{", scope, CSS)

    def _repr_html_(self) -> str:
        """The report inline (plots embedded), styled only inside its own block."""
        from .report import to_html

        md = self.report or f"# {self.question}\n\nStatus: {self.status} (no report yet)."
        body = re.search(r"<body>(.*)</body>", to_html(md, self.run_dir, self.question), re.S).group(1)
        return f'<div class="c2s-report"><style>{self._css}</style>{body}</div>'
