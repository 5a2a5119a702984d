from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QRELKIT_PROGRESS", "0")
# `make test` runs one pytest-xdist worker per core: one torch thread each, so workers do not fight for the cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import io
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from qrelkit.llm.base import LLM, ChoiceProbs, Completion, Message
from qrelkit.records import Document


class ScriptedLLM(LLM):
    """A deterministic in-process LLM: replies and grade distributions come from functions of the prompt."""

    def __init__(self, reply=lambda text: "1", probs=None, spec: str = "fake:scripted"):
        self.spec = spec
        self.reply, self.probs = reply, probs
        self.calls = 0

    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        self.calls += 1
        return Completion(text=self.reply(messages[-1]["content"]), prompt_tokens=10, completion_tokens=2)

    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        from qrelkit.llm.openai_backend import LogprobsUnavailable

        if self.probs is None:
            raise LogprobsUnavailable("scripted: no logprobs")
        self.calls += 1
        return ChoiceProbs(probs=self.probs(messages[-1]["content"]), mass=0.9, prompt_tokens=10)


@pytest.fixture
def scripted():
    return ScriptedLLM


@pytest.fixture
def small_corpus() -> list[Document]:
    texts = {
        "vpn": "The VPN client must be updated to version 5.2. Download it from the IT portal under Software.",
        "payroll": "Payroll runs on the 25th of each month. Expense claims after the 20th are paid next month.",
        "parking": "Staff parking permits are issued by facilities. Apply through the facilities desk with your badge.",
        "holiday": "Employees get 25 days of annual leave. Unused holiday can be carried over up to five days.",
        "printer": "To add a network printer, open settings, choose printers, and enter the printer's IP address.",
        "security": "Report phishing emails to the security team using the report button in your mail client.",
    }
    return [Document(doc_id=k, text=v) for k, v in texts.items()]


def run_qrelkit_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``qrelkit ARGS`` through the CLI's own entry point (:func:`qrelkit.cli.main`) inside this process, as
    ``python -m qrelkit`` would run it: exit status, stdout and stderr (a traceback there if it raised). A fresh
    process would pay again for importing torch and sentence-transformers (~12 s each time on 2 cores); the
    subprocess tests in test_end_to_end.py and test_pipeline_cli.py keep the real ``python -m qrelkit`` covered."""
    from qrelkit.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()  # main() sets up its own log handler, as in a fresh process (pytest's would swallow it)
    code: int | str | None = 1
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            argv, sys.argv = sys.argv, ["qrelkit", *args]
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code
            except Exception:
                traceback.print_exc()
            finally:
                sys.argv = argv
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["qrelkit", *args], returncode, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def qrelkit_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`run_qrelkit_here` in ``tmp_path``, with progress bars off unless a test turns them on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QRELKIT_PROGRESS", "0")
    return run_qrelkit_here
