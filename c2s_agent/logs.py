"""Library warnings and logs go to a log file, never to the terminal: results go to stdout, our own progress and
errors to stderr, and what transformers, scanpy, anndata, numba or Python's warnings have to say to the log."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

#: Loggers of the libraries we call (and Python's warnings, once captured).
LIBRARY_LOGGERS = (
    "py.warnings",
    "py.unraisable",
    "transformers",
    "scanpy",
    "anndata",
    "numba",
    "torch",
    "accelerate",
    "peft",
    "trl",
    "sentence_transformers",
    "faiss",
    "ray",
    "vllm",
    "httpx",
    "urllib3",
    "langchain",
    "langgraph",
    "mcp",
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def library_output_to(path: Path) -> Iterator[Path]:
    """Within the block, every warning and every library log record is appended to ``path``, not printed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = {}
    for name in LIBRARY_LOGGERS:
        log = logging.getLogger(name)
        saved[name] = (log.handlers[:], log.propagate, log.level, log.__dict__.get("addHandler"))
        log.handlers, log.propagate = [handler], False
        log.addHandler = functools.partial(_add_muted, log)  # anndata, imported later, adds a stderr handler
        if log.level in (logging.NOTSET, logging.DEBUG):
            log.setLevel(logging.INFO)
    ours = logging.getLogger("c2s_agent")
    ours.addHandler(handler)
    logging.captureWarnings(True)
    saved_hook, sys.unraisablehook = sys.unraisablehook, _log_unraisable
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the log
            yield path
    finally:
        gc.collect()  # objects left by a failed call (h5py files on a full disk) report while the hook is ours
        sys.unraisablehook = saved_hook
        logging.captureWarnings(False)
        ours.removeHandler(handler)
        for name, (handlers, propagate, level, add) in saved.items():
            log = logging.getLogger(name)
            if add is None:
                del log.addHandler
            else:  # an enclosing block's
                log.addHandler = add
            log.handlers, log.propagate = handlers, propagate
            log.setLevel(level)
        handler.close()


def _add_muted(log: logging.Logger, handler: logging.Handler) -> None:
    """``addHandler`` of a library logger while its records go to the log file: the handler is added silent (the
    library may still set its level and format)."""
    handler.handle = lambda record: False
    logging.Logger.addHandler(log, handler)


def unraisable_to(path: Path) -> None:
    """From now on, for this process (its shutdown included), 'Exception ignored in ...' is appended to ``path``:
    for a command-line run, whose failed writes may leave library objects (h5py files on a full disk) that are
    freed only when the interpreter exits."""
    import traceback

    path = str(path)

    def hook(unraisable: sys.UnraisableHookArgs, fmt=traceback.format_exception, opener=open) -> None:
        exc = unraisable.exc_value  # nothing is imported here: at interpreter exit imports fail
        lines = fmt(exc) if exc is not None else []
        try:
            with opener(path, "a", encoding="utf-8") as f:
                f.write(f"{unraisable.err_msg or 'Exception ignored in'}: {unraisable.object!r}\n{''.join(lines)}")
        except OSError:
            pass  # an unwritable log loses the noise, never the run

    sys.unraisablehook = hook


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """'Exception ignored in ...' (a library object failing in ``__del__``) goes to the log, not the terminal."""
    exc = unraisable.exc_value
    logging.getLogger("py.unraisable").warning(
        "%s: %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=(type(exc), exc, unraisable.exc_traceback) if exc is not None else None,
    )
