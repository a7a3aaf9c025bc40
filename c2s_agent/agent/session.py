"""Sessions: a conversation about one dataset. Each question is a run (a turn) whose manifest names the session
(its first turn's id), its place in it and the previous turn. The data state passes from turn to turn: the working
AnnData stays in memory within a process, and a new process rebuilds it from the input and the earlier turns'
slot deltas, so nothing a turn computed is computed again. Turns are checkpointed like any run: a session goes on
after a crash (the unfinished turn is resumed) or days later."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from . import runs

log = logging.getLogger(__name__)


class Session:
    """A session on ``data`` (a path or demo name) or ``adata`` (an AnnData in memory, which gets every turn's
    results in its slots, as :mod:`c2s_agent.tl` functions do). ``id`` is None until the first question."""

    def __init__(self, settings, data: str | None = None, adata=None, session_id: str | None = None):
        if (data is None) == (adata is None) and session_id is None:
            raise InputError(
                "session data",
                "needs either a file (or demo name) or an AnnData",
                "give one: c2s.ask('demo', question) or c2s.ask(adata, question)",
            )
        self.settings, self.data, self.adata, self.id = settings, data, adata, session_id
        self.working, self.at = None, None  # the working AnnData and the turn whose end state it is

    @classmethod
    def open(cls, settings, run_id: str, adata=None, data: str | None = None) -> Session:
        """The session that run ``run_id`` belongs to (any of its turns' ids, or the session's id); ``data``, when
        given, must be the session's (the next question checks it)."""
        _, run = runs.load_run(settings, run_id)
        return cls(settings, data=data if data is not None else run.data, adata=adata, session_id=run.session or run.id)

    def turns(self) -> list[dict]:
        """The manifests of the session's turns, in order."""
        if self.id is None:
            return []
        mine = [r for r in runs.list_runs(self.settings) if (r.get("session") or r["id"]) == self.id]
        return sorted(mine, key=lambda r: (r.get("turn", 1), r.get("created_epoch") or 0.0))

    def latest(self) -> dict | None:
        turns = self.turns()
        return turns[-1] if turns else None

    def ask(self, question: str, **options) -> dict:
        """Ask the next question of the session; ``options`` as :func:`c2s_agent.agent.runs.ask` takes them
        (``progress``, ``approve``, ``approver``, ``hypothesize``, ``planner_name``, ``chat_model``)."""
        last = self.latest()
        if last is None:
            out = runs.ask(question, self.data, self.settings, base=self.adata, **options)
            self.id = out["run"]["session"]
        else:
            if last["status"] not in runs.FINISHED:
                raise InputError(
                    f"turn {last['id']!r} of session {self.id!r}",
                    f"has not finished ({last['status']})",
                    "resume it first (Session.resume(), `c2s resume ID`, or reopen the chat)",
                )
            state = self.working if self.at == last["id"] else None
            out = runs.ask(
                question,
                self.data,
                self.settings,
                base=None if state is not None else self.adata,
                follows=last["id"],
                state=state,
                **options,
            )
        return self._keep(out)

    def resume(self, **options) -> dict:
        """Continue the session's unfinished last turn from its checkpoint."""
        last = self.latest()
        if last is None or last["status"] in runs.FINISHED:
            raise InputError(f"session {self.id!r}", "has no unfinished turn", "ask the next question instead")
        # a turn paused for approval stopped at a clean point; after a crash the data state is rebuilt from files
        paused_here = self.at == last["id"] and last["status"] == "awaiting_approval"
        state = self.working if paused_here else None
        out = runs.resume(
            last["id"], self.settings, base=None if state is not None else self.adata, state=state, **options
        )
        return self._keep(out)

    def _keep(self, out: dict) -> dict:
        """Remember the working data the turn left; write its results into the caller's AnnData."""
        self.working, self.at = out["adata"], out["run_id"]
        if self.adata is not None and out["adata"] is not None and out["adata"] is not self.adata:
            skipped = write_back(self.adata, out["adata"], Path(out["run_dir"]) / "slots")
            if skipped:
                log.warning(
                    "not copied into your AnnData (its genes differ from the working data's): %s; "
                    "c2s runs export %s has them",
                    ", ".join(skipped),
                    out["run_id"],
                )
        return out


def changed_keys(slots_dir: Path) -> tuple[set[str], set[str]]:
    """The ``kind/key`` slots a run's deltas changed, and those they removed."""
    import json

    import h5py

    changed, removed = set(), set()
    for path in sorted(slots_dir.glob("*.h5")) if slots_dir.exists() else []:
        with h5py.File(path, "r") as f:
            removed |= set(json.loads(f.attrs["removed"]))
            for kind in ("obs", "var"):
                if kind in f:
                    changed |= {f"{kind}/{c}" for c in f[kind].attrs.get("column-order", [])}
            for kind in ("obsm", "layers", "uns"):
                if kind in f:
                    changed |= {f"{kind}/{k}" for k in f[kind].keys()}
    return changed - removed, removed


def write_back(target, working, slots_dir: Path) -> list[str]:
    """Copy the slots a run changed from its working AnnData into ``target`` (the caller's): obs, obsm and uns
    always; var and layers only when both have the same genes (the working data may use .raw's genes). Returns
    the slots that could not be copied."""
    changed, removed = changed_keys(slots_dir)
    same_cells = list(target.obs_names) == list(working.obs_names)
    same_genes = list(target.var_names) == list(working.var_names)
    skipped = []
    for key in sorted(changed):
        kind, name = key.split("/", 1)
        fits = {"obs": same_cells, "obsm": same_cells, "var": same_genes, "layers": same_cells and same_genes}
        if not fits.get(kind, True):
            skipped.append(key)
        elif kind in ("obs", "var"):
            getattr(target, kind)[name] = getattr(working, kind)[name].values
        else:
            getattr(target, kind)[name] = getattr(working, kind)[name]
    for key in removed:
        kind, name = key.split("/", 1)
        container = getattr(target, kind)
        if kind in ("obs", "var") and name in container.columns:
            container.drop(columns=[name], inplace=True)
        elif kind not in ("obs", "var") and name in container:
            del container[name]
    return skipped
