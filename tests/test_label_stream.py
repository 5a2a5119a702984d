"""Streaming, checkpointed labeling: same labels as in memory, and a killed run resumes with nothing lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_student import TOPICS, topic_pairs

from qrelkit.distill import distill
from qrelkit.errors import QrelkitError
from qrelkit.io import read_pairs, read_qrels
from qrelkit.label import checkpoint_file, label_file_stream, label_pairs
from qrelkit.records import Pair
from qrelkit.students.encoder import Student

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    train, teacher = topic_pairs(list(TOPICS)[:6])
    path = tmp_path_factory.mktemp("student") / "model"
    distill(train, teacher).save(path)
    return path


def write_pairs_jsonl(path, n: int) -> list[Pair]:
    topics = list(TOPICS.values())
    pairs = [
        Pair(
            qid=f"q{i // 10}",
            query=f"{topics[(i // 10) % len(topics)][0]} {i // 10}",
            doc_id=f"d{i}",
            text=f"{topics[i % len(topics)][1]} Note {i}.",
        )
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(p.model_dump()) + "\n" for p in pairs))
    return pairs


def test_stream_matches_in_memory_labels_in_every_format(tmp_path, model_dir):
    pairs = write_pairs_jsonl(tmp_path / "pairs.jsonl", 95)
    student = Student.load(model_dir)
    scores, grades, _ = label_pairs(pairs, student, show_progress=False)
    for suffix in ("qrels", "jsonl", "parquet"):
        out = tmp_path / f"labels.{suffix}"
        stats = label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=20, student=student)
        assert stats["pairs"] == 95 and stats["labelled_this_run"] == 95
        if suffix == "qrels":
            assert read_qrels(out) == {(p.qid, p.doc_id): int(g) for p, g in zip(pairs, grades, strict=True)}
        elif suffix == "jsonl":
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            assert [r["doc_id"] for r in rows] == [p.doc_id for p in pairs]
            np.testing.assert_allclose([r["score"] for r in rows], scores, atol=1e-4)
        else:
            table = pq.read_table(out).to_pydict()
            assert table["grade"] == [int(g) for g in grades] and table["qid"] == [p.qid for p in pairs]
            assert not (tmp_path / "labels.parquet.parts").exists()
        again = label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=20, student=student)
        assert again.get("skipped") and again["pairs"] == 95, "a finished run is not repeated"


class Crash(Exception):
    pass


class CrashingStudent:
    """Labels like the real student but raises after ``after`` chunks: a crash in the middle of a run."""

    def __init__(self, student: Student, after: int):
        self.student, self.after, self.calls = student, after, 0

    def predict_pairs(self, pairs, *, batch_size=64):
        self.calls += 1
        if self.calls > self.after:
            raise Crash
        return self.student.predict_pairs(pairs, batch_size=batch_size)


@pytest.mark.parametrize("suffix", ["qrels", "parquet"])
def test_crash_then_resume_gives_the_uninterrupted_output(tmp_path, model_dir, suffix):
    write_pairs_jsonl(tmp_path / "pairs.jsonl", 70)
    student = Student.load(model_dir)
    full = tmp_path / f"full.{suffix}"
    label_file_stream(tmp_path / "pairs.jsonl", model_dir, full, chunk=10, student=student)
    out = tmp_path / f"resumed.{suffix}"
    with pytest.raises(Crash):
        label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=10, student=CrashingStudent(student, 3))
    assert json.loads(checkpoint_file(out).read_text())["done"] == 30
    counting = CrashingStudent(student, 10**6)
    stats = label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=10, student=counting)
    assert stats["resumed_from"] == 30 and stats["labelled_this_run"] == 40 and counting.calls == 4
    if suffix == "qrels":
        assert out.read_bytes() == full.read_bytes()
    else:
        assert pq.read_table(out).equals(pq.read_table(full))


def test_changed_input_starts_again(tmp_path, model_dir):
    write_pairs_jsonl(tmp_path / "pairs.jsonl", 30)
    student = Student.load(model_dir)
    out = tmp_path / "labels.qrels"
    with pytest.raises(Crash):
        label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=10, student=CrashingStudent(student, 1))
    time.sleep(0.01)
    write_pairs_jsonl(tmp_path / "pairs.jsonl", 25)  # a different file: the old checkpoint must not be used
    stats = label_file_stream(tmp_path / "pairs.jsonl", model_dir, out, chunk=10, student=student)
    assert stats["resumed_from"] == 0 and len(read_qrels(out)) == 25


def test_sigkill_midway_then_resume(tmp_path, model_dir):
    n = 1500  # 15 chunks: it is killed after 3 or more, long before the last
    write_pairs_jsonl(tmp_path / "pairs.jsonl", n)
    env = {**os.environ, "QRELKIT_PROGRESS": "0"}

    def label(out: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "qrelkit", "label", "pairs.jsonl", "-m", str(model_dir), "-o", out]
        return subprocess.Popen(
            [*cmd, "--chunk", "100"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    proc = label("killed.jsonl")
    ckpt = checkpoint_file(tmp_path / "killed.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and json.loads(ckpt.read_text())["done"] >= 300:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = json.loads(ckpt.read_text())["done"]
    assert 300 <= done_at_kill < n
    for out in ("killed.jsonl", "clean.jsonl"):
        finished = label(out)
        _, stderr = finished.communicate(timeout=300)
        assert finished.returncode == 0, stderr.decode()[-2000:]
    killed = (tmp_path / "killed.jsonl").read_text().splitlines()
    keys = [(r["qid"], r["doc_id"]) for r in map(json.loads, killed)]
    assert len(keys) == len(set(keys)) == n, "every pair exactly once"
    assert [(p.qid, p.doc_id) for p in read_pairs(tmp_path / "pairs.jsonl")] == keys
    assert killed == (tmp_path / "clean.jsonl").read_text().splitlines()
    assert json.loads(ckpt.read_text())["stats"]["resumed_from"] == done_at_kill


def test_a_folder_that_is_not_a_student_is_a_clear_error(tmp_path):
    write_pairs_jsonl(tmp_path / "pairs.jsonl", 5)
    with pytest.raises(QrelkitError, match="not a qrelkit student folder"):
        label_file_stream(tmp_path / "pairs.jsonl", tmp_path, tmp_path / "labels.qrels")


def test_cli_label_stdout_is_json_and_plain_mistakes_are_one_line_errors(
    tmp_path, model_dir, qrelkit_here, monkeypatch
):
    write_pairs_jsonl(tmp_path / "pairs.jsonl", 30)
    monkeypatch.setenv("QRELKIT_PROGRESS", "1")  # progress bars on: they must go to stderr
    run = qrelkit_here

    r = run("label", "pairs.jsonl", "-m", str(model_dir), "-o", "labels.qrels")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout is the JSON summary and nothing else
    assert summary["pairs"] == 30 and summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    (tmp_path / "empty.jsonl").write_text("")
    for args, message in (
        (("empty.jsonl", "-o", "e.qrels"), "empty input: no pairs"),
        (("pairs.jsonl", "-o", "out.csv"), "unknown output format '.csv'"),
        (("pairs.jsonl", "-o", "b.qrels", "--batch-size", "0"), "--batch-size must be at least 1, got 0"),
        (("pairs.jsonl", "-o", "d.qrels", "--device", "cuda", "--runtime", "onnx"), "needs --runtime torch"),
        (("pairs.jsonl", "-o", "d.qrels", "--device", "cuda", "--engine", "ray"), "--engine ray labels on CPU"),
    ):
        r = run("label", *args, "-m", str(model_dir))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()
    r = run("mine", "q.jsonl", "d.parquet", "--k", "-5")
    assert r.returncode == 2 and "error: --k must be at least 0, got -5" in r.stderr


def test_the_labeling_device_is_checked_against_the_runtime_and_the_machine(monkeypatch):
    from qrelkit.students import labeling_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert labeling_device("auto", "torch") == "cpu" and labeling_device("cpu", "onnx-int8-checked") == "cpu"
    with pytest.raises(QrelkitError, match="torch sees no CUDA device"):
        labeling_device("cuda", "torch")
    with pytest.raises(QrelkitError, match="unknown device 'tpu'"):
        labeling_device("tpu", "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert labeling_device("auto", "torch") == "cuda" and labeling_device("cuda:1", "torch") == "cuda:1"
    assert labeling_device("auto", "onnx-int8") == "cpu"  # ONNX Runtime's CPU provider
    with pytest.raises(QrelkitError, match="needs --runtime torch"):
        labeling_device("cuda", "onnx")
