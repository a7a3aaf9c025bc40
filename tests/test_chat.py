"""``c2s chat`` driven as a person would: in a terminal (a pseudo-terminal: prompt, typed questions, an approval
answered by editing the arguments, history, Ctrl-D) and from a script on stdin (answers on stdout only)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

C2S = str(Path(sys.executable).parent / "c2s")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
NK = "Which genes are specific to NK cells? Show the top 8."


def _env(settings):
    env = {
        **os.environ,
        "C2S_RUNS_DIR": str(settings.runs_dir),
        "C2S_CACHE_DIR": str(settings.cache_dir),
        "TERM": "xterm",
        "COLUMNS": "160",
    }
    env.pop("C2S_PLUGINS", None)
    return env


class Terminal:
    """A command on a pseudo-terminal: type lines, wait for text on the screen."""

    def __init__(self, argv: list[str], env: dict):
        self.fd, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.screen = ""

    def expect(self, pattern: str, timeout: float = 300) -> str:
        """Read until ``pattern`` (a regex) appears after what earlier calls consumed; returns the text up to it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.screen)
            if m:
                seen, self.screen = self.screen[: m.end()], self.screen[m.end() :]
                return seen
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.screen += ANSI.sub("", os.read(self.fd, 65536).decode(errors="replace"))
                except OSError:  # the program ended
                    break
        raise AssertionError(f"did not see {pattern!r}; screen ends with: {self.screen[-2000:]}")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=60)
        finally:
            os.close(self.fd)


def test_chat_in_a_terminal_with_follow_up_and_approval(settings):
    term = Terminal([C2S, "chat", "--data", "demo", "--approve", "--approve-cost", "medium"], _env(settings))
    try:
        term.expect(r"c2s> ")
        term.type(NK + "\n")
        term.expect(r"accept / edit / skip / later")
        term.type("\n")  # Enter accepts
        answer = term.expect(r"c2s> ")
        assert re.search(r"NK: (\w+, ){7}\w+", answer) and "Report:" in answer
        term.type("now the same for the B cells\n")
        term.expect(r'Approve s1 marker_genes .*"groups": \["B", "B Activated"\], "n_genes": 8')  # the B cells
        term.expect(r"accept / edit / skip / later")
        term.type("edit\n")
        term.expect(r"arguments \(JSON\)")
        term.type('{"groupby": "cell_type", "groups": ["B"], "n_genes": 3}\n')
        answer = term.expect(r"c2s> ")
        assert re.search(r"B: (\w+, ){2}\w+\.", answer) and "MS4A1" in answer
        term.type("/history\n")
        history = term.expect(r"c2s> ")
        assert "[1]" in history and "[2]" in history and "now the same for the B cells" in history
        term.type("\x04")  # Ctrl-D leaves
        term.expect(r"saved; continue with `c2s chat --session")
    finally:
        code = term.close()
    assert code == 0


def test_chat_from_a_script_answers_on_stdout(settings):
    script = f"{NK}\nskip\n/nonsense\nWhat is the stock price of Illumina?\n/history\n"
    p = subprocess.run(
        [C2S, "chat", "--data", "demo", "--approve", "--approve-cost", "medium"],
        input=script,
        capture_output=True,
        text=True,
        env=_env(settings),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert '- No installed tool can do this: "What is the stock price of Illumina"' in out
    turns = [line for line in out if re.match(r"\[\d\] ", line)]
    assert len(turns) == 2 and "stock price" in turns[1]
    assert "skip" in p.stderr and "unknown command /nonsense" in p.stderr  # progress and prompts stay on stderr
    assert not any("Approve" in line for line in out)


@pytest.mark.parametrize("args", [["chat"], ["chat", "--session", "nope"]])
def test_chat_bad_start(settings, args):
    p = subprocess.run([C2S, *args], input="", capture_output=True, text=True, env=_env(settings), timeout=120)
    assert p.returncode == 2 and ("needs a dataset or a session" in p.stderr or "run 'nope': not found" in p.stderr)
