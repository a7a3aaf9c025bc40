"""Library noise goes to the log file: Python warnings, library loggers and 'Exception ignored' from ``__del__``."""

import subprocess
import sys
import textwrap


def test_library_output_goes_to_the_log_not_the_terminal(tmp_path):
    log = tmp_path / "logs" / "c2s.log"
    script = textwrap.dedent(
        f"""
        import logging, warnings
        from c2s_agent.logs import library_output_to

        class Leaky:
            def __del__(self):
                raise OSError(28, "No space left on device")

        with library_output_to({str(log)!r}):
            warnings.warn("a library FutureWarning", FutureWarning)
            logging.getLogger("transformers").warning("a transformers warning")
            x = Leaky()
            del x
            y = [Leaky()]
            y.append(y)  # freed only by the collector, which runs before the block ends
            del y
        print("result")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "result\n" and r.stderr == "", r.stderr
    text = log.read_text()
    assert "a library FutureWarning" in text and "a transformers warning" in text
    assert text.count("No space left on device") == 2 and "Exception ignored" in text


def test_a_library_imported_inside_the_block_prints_nothing(tmp_path):
    """anndata adds its own stderr handler when first imported; inside the block that handler stays silent."""
    log = tmp_path / "c2s.log"
    script = textwrap.dedent(
        f"""
        import sys
        from c2s_agent.logs import library_output_to

        assert "anndata" not in sys.modules
        with library_output_to({str(log)!r}), library_output_to({str(tmp_path / "inner.log")!r}):
            pass  # blocks nest (a run inside a command), each restoring what it found
        with library_output_to({str(log)!r}):
            import anndata as ad
            import numpy as np
            import pandas as pd

            obs = pd.DataFrame({{"s": ["x", "x", "y"]}}, index=["a", "b", "c"])
            a = ad.AnnData(np.ones((3, 2), np.float32), obs=obs)
            a.write_h5ad({str(tmp_path / "a.h5ad")!r})  # logs "... storing 's' as categorical" at INFO
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "", r.stderr
    assert "storing 's' as categorical" in log.read_text()


def test_a_command_keeps_library_noise_in_the_log_until_it_exits(tmp_path):
    """An object that fails in ``__del__`` only when the interpreter exits (h5py files left by a write to a full
    disk) reports to the log, not the terminal, once a command has called ``unraisable_to``."""
    log = tmp_path / "c2s.log"
    script = textwrap.dedent(
        f"""
        from c2s_agent.logs import unraisable_to

        class Leaky:
            def __del__(self):
                raise RuntimeError("Can't decrement id ref count (file write failed)")

        kept = Leaky()  # freed at interpreter exit
        unraisable_to({str(log)!r})
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "Can't decrement id ref count" in log.read_text() and "Traceback" in log.read_text()
