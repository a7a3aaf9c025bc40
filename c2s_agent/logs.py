"""Library warnings and logs go to a log file, never to the terminal: results go to stdout, our own progress and
errors to stderr, and what transformers, scanpy, anndata, numba or Python's warnings have to say to the log."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

#: Loggers of the libraries we call (and Python's warnings, once captured).
LIBRARY_LOGGERS = (
    "py.warnings",
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
        saved[name] = (log.handlers[:], log.propagate, log.level)
        log.handlers, log.propagate = [handler], False
        if log.level in (logging.NOTSET, logging.DEBUG):
            log.setLevel(logging.INFO)
    ours = logging.getLogger("c2s_agent")
    ours.addHandler(handler)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the log
            yield path
    finally:
        logging.captureWarnings(False)
        ours.removeHandler(handler)
        for name, (handlers, propagate, level) in saved.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate = handlers, propagate
            log.setLevel(level)
        handler.close()
