"""``c2s ask``, ``c2s resume``, ``c2s runs list|show|export``, ``c2s plugins list`` and ``c2s eval planning``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, console
from .evals import eval_app

runs_app = typer.Typer(help="Past runs of `c2s ask`.", no_args_is_help=True)
plugins_app = typer.Typer(help="Installed plugins and their tools.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(plugins_app, name="plugins")


def _settings(planner: str | None = None):
    from ..config import Settings

    s = Settings()
    return s.model_copy(update={"planner": planner}) if planner else s


def _show_plan(plan) -> None:
    from rich.table import Table

    if not plan.steps:
        console.print(
            "[yellow]No installed tool can do this[/]: "
            + "; ".join(f'"{c}"' for c in plan.unanswered or [plan.question])
        )
        return
    table = Table(title=f"Plan ({plan.planner} planner)", title_justify="left")
    for col in ("step", "tool", "arguments", "answers"):
        table.add_column(col)
    for s in plan.steps:
        table.add_row(s.id, s.tool, json.dumps(s.args), s.why)
    console.print(table)
    for note in plan.notes:
        console.print(f"  [dim]{note.kind}: {note.text}[/]", highlight=False)
    for p in plan.problems:
        console.print(f"  [red]problem:[/] {p}")


def _progress():
    """A callback printing the plan and live step progress."""
    state = {}

    def cb(event: str, info: dict) -> None:
        if event == "plan":
            _show_plan(info["plan"])
        elif event == "step_start":
            state["status"] = console.status(
                f"[{info['index'] + 1}/{info['total']}] {info['step'].id} {info['step'].tool} ..."
            )
            state["status"].start()
        elif event in ("step_done", "step_failed", "step_skipped"):
            if state.get("status"):
                state["status"].stop()
            step = info["step"]
            if event == "step_done":
                console.print(
                    f"[green]done[/] {step.id} {step.tool} ({info['result'].duration_s:.1f} s): "
                    f"{info['result'].evidence[:200]}"
                )
            elif event == "step_skipped":
                console.print(f"[dim]already done[/] {step.id} {step.tool}")
            else:
                console.print(f"[red]failed[/] {step.id} {step.tool}: {info['error']}")
        elif event == "approval":
            console.print(f"[cyan]{info['action']}[/] {info['step'].id} {info['step'].tool}")
        elif event == "hypotheses":
            for h in info["hypotheses"]:
                console.print(f"[bold]{h.id}[/] ({h.confidence:.2f}) {h.statement}")
        elif event == "replan":
            console.print(f"[yellow]re-planned[/]: {info['note']}")

    return cb


def _approver(answers_file: str | None):
    """Answers approval pauses from a JSON file (a list of {"action", "args"}, used in order; the run pauses when
    they run out) or by asking on the terminal (accept / edit the arguments as JSON / skip)."""
    from ..errors import InputError

    if answers_file:
        try:
            answers = json.loads(Path(answers_file).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                answers_file,
                f"is not a readable JSON file ({exc})",
                'write a list such as [{"action": "accept"}, {"action": "skip"}]',
            ) from exc
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise InputError(
                answers_file,
                "must hold a JSON list of objects",
                'e.g. [{"action": "edit", "args": {"n_perms": 100}}, {"action": "skip"}]',
            )
        return lambda request: answers.pop(0) if answers else None

    def ask(request: dict):
        if request.get("problem"):
            console.print(f"[red]{request['problem']}[/]")
        console.print(
            f"[bold yellow]Approve[/] {request['step']} {request['tool']} (cost {request['cost']}) with "
            f"{json.dumps(request['args'])}?"
        )
        try:
            choice = typer.prompt("accept / edit / skip / later", default="accept").strip().lower()
            if choice.startswith("l"):
                return None
            if choice.startswith("e"):
                return {
                    "action": "edit",
                    "args": json.loads(typer.prompt("arguments (JSON)", default=json.dumps(request["args"]))),
                }
        except (typer.Abort, EOFError):
            return None
        except ValueError as exc:
            console.print(f"[red]not valid JSON[/] ({exc}); answer again")
            return ask(request)
        return {"action": "skip" if choice.startswith("s") else "accept"}

    return ask


def _finish(out: dict) -> None:
    run = out["run"]
    rd = out["run_dir"]
    if run["status"] == "awaiting_approval":
        w = run["waiting_for"]
        console.print(
            f"Run [bold]{run['id']}[/] paused before {w['step']} {w['tool']}; continue with `c2s resume {run['id']}`"
        )
        print(rd)
        return
    console.print(f"Run [bold]{run['id']}[/] {run['status']} in {run['timings']['total_s']:.1f} s")
    if run.get("report"):
        console.print(
            f"Report: {rd / 'report.md'}\n        {rd / 'report.html'}\n"
            f'Follow up: c2s ask --session {run["id"]} "..." (or c2s chat --session {run["id"]})'
        )
    print(rd / "report.html" if run.get("report") else rd)
    if run["status"] == "invalid":
        console.print("[red]The plan did not pass its check[/]; see the problems above, rephrase or name the column.")
        raise typer.Exit(1)


@app.command("ask")
def ask(
    question: str = typer.Argument(..., help="your question in plain language"),
    data: Optional[str] = typer.Option(None, "--data", help="an .h5ad file, or 'demo' / 'pbmc68k' / 'kang2018'"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the checked plan without running it"),
    as_json: bool = typer.Option(False, "--json", help="with --dry-run: print the plan as JSON"),
    planner: Optional[str] = typer.Option(None, "--planner", help="'embedded' (default), 'llm' or 'hybrid'"),
    hypothesize: bool = typer.Option(False, "--hypothesize", help="also propose ranked, testable hypotheses"),
    approve: bool = typer.Option(False, "--approve", help="pause before expensive steps: accept, edit or skip"),
    approve_cost: str = typer.Option("high", "--approve-cost", help="with --approve: 'high' or 'medium'"),
    answers: Optional[str] = typer.Option(None, "--answers", help="JSON file answering approval pauses in order"),
    session: Optional[str] = typer.Option(
        None,
        "--session",
        help="ask a follow-up in this run's session (it may refer to earlier turns: "
        '"those genes", "the same for ...")',
    ),
) -> None:
    """Plan the question, run the tools, and write an evidence-linked report."""
    from ..agent import runs

    settings = _settings(planner)
    options = {
        "progress": _progress(),
        "hypothesize": hypothesize,
        "approver": _approver(answers),
        "approve": approve_cost if approve or answers else None,
    }
    if session is not None:
        from ..agent.session import Session
        from ..errors import InputError

        if dry_run:
            raise InputError("--dry-run", "does not combine with --session", "ask the follow-up without --dry-run")
        _finish(Session.open(settings, session, data=data).ask(question, **options))
        return
    if dry_run:
        plan = runs.dry_run(question, data, settings)
        if as_json:
            print(
                json.dumps(
                    {
                        "question": question,
                        "planner": plan.planner,
                        "ok": plan.ok,
                        "answerable": plan.answerable,
                        "steps": plan.summary(),
                        "unanswered": plan.unanswered,
                        "notes": [n.model_dump() for n in plan.notes],
                        "problems": plan.problems,
                    },
                    indent=1,
                )
            )
        else:
            _show_plan(plan)
        return
    _finish(runs.ask(question, data, settings, **options))


@app.command("hypothesize")
def hypothesize_cmd(
    question: str = typer.Argument(..., help="your question in plain language"),
    data: Optional[str] = typer.Option(None, "--data", help="an .h5ad file, or 'demo'"),
    planner: Optional[str] = typer.Option(None, "--planner", help="'embedded' (default), 'llm' or 'hybrid'"),
) -> None:
    """Investigate the question and propose ranked, testable hypotheses with their evidence (same as ask --hypothesize)."""
    from ..agent import runs

    _finish(runs.ask(question, data, _settings(planner), progress=_progress(), hypothesize=True))


@app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="a run id from `c2s runs list`"),
    answers: Optional[str] = typer.Option(None, "--answers", help="JSON file answering approval pauses"),
) -> None:
    """Continue a run that was interrupted or paused for approval; finished steps are not run again."""
    from ..agent import runs

    _finish(runs.resume(run_id, _settings(), progress=_progress(), approver=_approver(answers)))


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Runs in the runs directory, newest first."""
    from rich.table import Table

    from ..agent import runs

    items = runs.list_runs(_settings())
    if as_json:
        print(
            json.dumps(
                [{k: r.get(k) for k in ("id", "status", "question", "data", "created")} for r in items], indent=1
            )
        )
        return
    table = Table()
    for col in ("id", "status", "question", "data"):
        table.add_column(col)
    for r in items:
        table.add_row(r["id"], str(r.get("status")), r["question"][:70], str(r.get("data")))
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A run's plan, ledger and report paths."""
    from ..agent import runs

    info = runs.show_run(_settings(), run_id)
    if as_json:
        print(json.dumps(info, indent=1, default=str))
        return
    console.print(f"[bold]{info['id']}[/] {info.get('status')}: {info['question']}  (data: {info.get('data')})")
    if info.get("plan"):
        from ..agent.plan import Plan

        _show_plan(Plan.model_validate(info["plan"]))
    for r in info["ledger"]:
        tok = f", tokens {r['tokens_in']}/{r['tokens_out']}" if r["tokens_in"] else ""
        console.print(
            f"  {r['step_id']:>6} #{r['seq']} {r['kind']:8s} {r['name']:24s} {r['status']:8s} "
            f"{(r['duration_s'] or 0):7.2f} s{tok}"
        )
    if info.get("report"):
        console.print(f"Report: {info['report']}")


@runs_app.command("export")
def runs_export(run_id: str = typer.Argument(...), out: Path = typer.Argument(..., help="the .h5ad to write")) -> None:
    """Write a run's working data (the input with every slot its steps added) as an .h5ad."""
    from ..agent import runs
    from ..data import write

    write(runs.working_data(_settings(), run_id), out)
    console.print(f"Wrote {out}")


@plugins_app.command("list")
def plugins_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Loaded plugins, what each registered, and plugins that failed to load (to stdout)."""
    from rich.console import Console

    from .. import plugins, registry

    settings = _settings()
    rows = plugins.plugin_table(settings)
    found = {kind: registry.collect(kind, settings) for kind in registry.KINDS}
    for row in rows:
        row["registered"] = {
            kind: sorted(n for n, obj in objs.items() if obj.plugin == row["name"]) for kind, objs in found.items()
        }
        row["registered"] = {k: v for k, v in row["registered"].items() if v}
    if as_json:
        print(json.dumps({"plugins": rows, "errors": plugins.load_errors}, indent=1))
        return
    out = Console(soft_wrap=True)
    for row in rows:
        out.print(f"[bold]{row['name']}[/] ({row['version']}, {row['source']}): hooks {', '.join(row['hooks'])}")
        for name in row["registered"].get("tools", []):
            out.print(f"    tool [cyan]{name}[/]: {found['tools'][name].description[:100]}")
        for kind, names in row["registered"].items():
            if kind != "tools":
                out.print(f"    {kind.replace('_', ' ')}: {', '.join(names)}")
    for name, msg in plugins.load_errors:
        out.print(f"[yellow]not loaded[/] {name}: {msg}")


@eval_app.command("planning")
def eval_planning_cmd(
    planner: str = typer.Option("embedded", "--planner"),
    questions: str = typer.Option(
        "development", "--questions", help="'development', 'heldout' or a YAML file of questions"
    ),
    as_json: bool = typer.Option(False, "--json", help="print every row as JSON"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="list wrongly planned questions"),
) -> None:
    """Score a planner on a planning question set and print its accuracy (to stdout)."""
    from ..agent.evaluate import main

    main(
        ["--planner", planner, "--questions", questions] + (["--json"] if as_json else []) + (["-v"] if verbose else [])
    )
