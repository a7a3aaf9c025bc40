"""Errors a user sees: each names the input, what is wrong with it and how to fix it."""

from __future__ import annotations


class C2SError(Exception):
    """Base error. ``str(err)`` reads "<input>: <problem>. Fix: <fix>"."""

    def __init__(self, subject: str, problem: str, fix: str = ""):
        self.subject, self.problem, self.fix = str(subject), problem.rstrip("."), fix.rstrip(".")
        msg = f"{self.subject}: {self.problem}."
        if self.fix:
            msg += f" Fix: {self.fix}."
        super().__init__(msg)


class InputError(C2SError, ValueError):
    """The user's data, file or argument cannot be used as given."""


class PlanError(C2SError):
    """A plan cannot run: unknown tool, bad arguments, or a slot nothing produces."""


class ModelError(C2SError):
    """A model or backend could not be loaded or answered badly."""
