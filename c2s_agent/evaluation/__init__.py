"""Batch evaluation: suites (YAML) of tasks over datasets, models and prompt sets, run locally or on Ray into a
resumable, content-keyed results store, with Markdown/HTML reports and run comparisons.

    suite = load_suite("evals/suites/bundled.yaml")
    result = run_suite(suite, Settings(), executor="local")
    report(result.run_dir)
"""

from .report import compare, report
from .runner import RunResult, code_version, run_suite
from .suite import Cell, Suite, load_suite

__all__ = ["Cell", "RunResult", "Suite", "code_version", "compare", "load_suite", "report", "run_suite"]
