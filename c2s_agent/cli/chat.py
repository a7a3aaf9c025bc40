"""``c2s chat``: a conversation with the agent about one dataset in the terminal. Each question is a turn of a
session (checkpointed like any run), follow-ups may refer to earlier turns, and ``c2s chat --session ID`` reopens
a session days later or after a crash (its unfinished turn is resumed first). Answers go to stdout; the plan,
progress and approval questions to stderr."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ._app import app, console
from .agent import _approver, _progress, _settings

HELP = (
    'Ask a question in plain language; follow-ups may say "those genes" or "now the same for the B cells".\n'
    "/history  the session's questions    /report  the last report's path\n"
    "/resume   continue an interrupted turn    /quit  leave (the session is saved; reopen with --session)"
)


def _read(prompt: str) -> str | None:
    """The next line typed (a prompt on a terminal; piped input is echoed to stderr); None at the end of input."""
    try:
        if sys.stdin.isatty():
            return input(prompt)
        line = sys.stdin.readline()
    except EOFError:
        return None
    except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line; Ctrl-D or /quit leaves
        print(file=sys.stderr)
        return ""
    if not line:
        return None
    console.print(f"[dim]{prompt}{line.rstrip()}[/]", highlight=False)
    return line.rstrip("\n")


def _answer(out: dict) -> None:
    """The turn's answer on stdout: one line per finished step's evidence, then the report's path."""
    run = out["run"]
    plan = out["state"].get("plan") if out.get("state") else None
    if run["status"] == "awaiting_approval":
        print(f"[{run['id']}] paused before {run['waiting_for']['step']}; type /resume to continue")
        return
    for res in out["results"].values():
        print(f"- {res.evidence} ({res.step} {res.tool})")
    if plan is not None and plan.unanswered:
        print("- No installed tool can do this: " + "; ".join(f'"{c}"' for c in plan.unanswered))
    if run.get("report"):
        print(f"Report: {out['run_dir'] / 'report.html'}")
    sys.stdout.flush()


def _history(session) -> None:
    for t in session.turns():
        print(f"[{t.get('turn', 1)}] {t['id']} {t['status']}: {t['question']}")
    sys.stdout.flush()


def _turn(session, question: str | None, options: dict) -> None:
    """Ask (or with None, resume) one turn; a user error is said and the conversation goes on."""
    from ..errors import C2SError

    try:
        out = session.ask(question, **options) if question is not None else session.resume(**options)
    except C2SError as exc:
        console.print(f"[bold red]Error:[/] {exc}", highlight=False)
        return
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/] Finished steps are saved; /resume continues the turn.")
        return
    _answer(out)


@app.command("chat")
def chat(
    data: Optional[str] = typer.Option(None, "--data", help="an .h5ad file, or 'demo' / 'pbmc68k' / 'kang2018'"),
    session_id: Optional[str] = typer.Option(None, "--session", help="reopen a session (any of its run ids)"),
    planner: Optional[str] = typer.Option(None, "--planner", help="'embedded' (default), 'llm' or 'hybrid'"),
    approve: bool = typer.Option(False, "--approve", help="pause before expensive steps: accept, edit or skip"),
    approve_cost: str = typer.Option("high", "--approve-cost", help="with --approve: 'high' or 'medium'"),
) -> None:
    """Talk to the agent about a dataset: questions and follow-ups in one session, each turn checkpointed."""
    from ..agent.session import Session
    from ..errors import InputError

    settings = _settings(planner)
    if session_id is None and data is None:
        raise InputError("c2s chat", "needs a dataset or a session", "give --data FILE (or demo) or --session ID")
    session = Session.open(settings, session_id, data=data) if session_id else Session(settings, data=data)
    options = {"progress": _progress(), "approver": _approver(None)}
    ask_options = {**options, "approve": approve_cost if approve else None}
    if sys.stdin.isatty():  # line editing, and the session's earlier questions one arrow-up away
        import readline

        for t in session.turns():
            readline.add_history(t["question"])
    if session_id:
        _history(session)
        last = session.latest()
        if last and last["status"] not in ("done", "unanswerable", "invalid"):
            console.print(f"Turn {last['id']} did not finish ({last['status']}); resuming it.")
            _turn(session, None, options)
    console.print(HELP, highlight=False)
    while True:
        line = _read("c2s> ")
        if line is None or line.strip() in ("/quit", "/exit", "/q"):
            break
        cmd = line.strip()
        if not cmd:
            continue
        if cmd == "/help":
            console.print(HELP, highlight=False)
        elif cmd == "/history":
            _history(session)
        elif cmd == "/report":
            last = session.latest()
            print((last.get("report") or "no report yet") if last else "no question asked yet")
        elif cmd == "/resume":
            _turn(session, None, options)
        elif cmd.startswith("/"):
            console.print(f"[yellow]unknown command {cmd}[/]; /help lists them")
        else:
            _turn(session, cmd, ask_options)
    if session.id:
        console.print(f"Session [bold]{session.id}[/] saved; continue with `c2s chat --session {session.id}`")
