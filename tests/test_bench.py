"""`qrelkit bench`: FLOP arithmetic, and a small real run (SmolLM2 teacher, every student runtime) end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from test_student import TOPICS, topic_pairs

from qrelkit.bench import (
    _batches,
    _fastest,
    _in_fresh_process,
    _peak_rss_mb,
    benchmark_dir,
    encoder_flops,
    gemm_peak_gflops,
)
from qrelkit.errors import QrelkitError

MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}


def test_encoder_flops_count_linear_layers_and_attention():
    # one 10-token text: per layer 2·(4·384² + 2·384·1536) FLOPs per token plus 4·10²·384 for attention
    per_layer = 10 * 2 * (4 * 384 * 384 + 2 * 384 * 1536) + 4 * 100 * 384
    assert encoder_flops(MINILM, [10]) == pytest.approx(6 * per_layer)
    assert encoder_flops(MINILM, [10, 10]) == pytest.approx(2 * encoder_flops(MINILM, [10]))
    assert encoder_flops(MINILM, [20]) > 2 * encoder_flops(MINILM, [10]), "attention grows with length squared"


def test_bench_batches_keep_a_query_whole_for_a_student_that_reads_query_context():
    rows = [{"qid": q, "query": f"query {q}", "doc_id": str(i), "text": "x"} for i, q in enumerate("aaabbc")]
    assert _batches(rows, 2) == [(0, 2), (2, 4), (4, 6)]
    assert _batches(rows, 2, whole_queries=True) == [(0, 3), (3, 5), (5, 6)]  # as qrelkit label's chunks
    with pytest.raises(QrelkitError, match="not next to each other"):
        _batches([*rows, rows[0]], 2, whole_queries=True)


class _SlowFirstPass:
    """A labeler whose first pass is slow (a noisy neighbour) and whose cache must be cleared between passes."""

    def __init__(self) -> None:
        self.calls, self.cleared = 0, 0

    def predict(self, queries: list[str], docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import time

        self.calls += 1
        time.sleep(0.05 if self.calls <= 2 else 0.0)  # both batches of the first pass
        return np.zeros(len(queries)), np.full(len(queries), self.cleared)

    def clear_cache(self) -> None:
        self.cleared += 1


def test_bench_times_a_runtime_by_its_fastest_pass_each_from_a_cold_cache():
    labeler = _SlowFirstPass()
    timed = _fastest(3, labeler, ["q"] * 4, ["d"] * 4, [(0, 2), (2, 4)])
    assert labeler.calls == 6 and labeler.cleared == 2, "three passes, the cache emptied before the 2nd and 3rd"
    assert len(timed["pass_seconds"]) == 3 and timed["pass_seconds"][0] >= 0.1
    assert timed["seconds"] == min(timed["pass_seconds"]) < 0.1
    assert len(timed["latencies"]) == 2 and timed["grades"] in ([1] * 4, [2] * 4), "a fast pass's own results"
    once = _fastest(1, _SlowFirstPass(), ["q"] * 4, ["d"] * 4, [(0, 4)])
    assert len(once["pass_seconds"]) == 1


def test_gemm_probe_measures_a_plausible_rate():
    gflops = gemm_peak_gflops(size=256, seconds=0.3)
    assert 0.1 < gflops < 1e5


def test_missing_benchmark_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QRELKIT_BENCHMARKS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(QrelkitError, match="QRELKIT_BENCHMARKS"):
        benchmark_dir("no-such-benchmark")


@pytest.mark.slow
def test_bench_cli_times_teacher_and_every_student_runtime(tmp_path):
    pytest.importorskip("llama_cpp")
    try:
        benchmark_dir()
    except QrelkitError:
        pytest.skip("../shared/benchmarks is not here")
    from qrelkit.distill import distill
    from qrelkit.students.onnx import export_onnx

    train, teacher = topic_pairs(list(TOPICS)[:5])
    distill(train, teacher).save(tmp_path / "student")
    export_onnx(tmp_path / "student")
    cmd = [sys.executable, "-m", "qrelkit", "bench", "--pairs", "60", "--teacher", "gguf:smollm2-135m"]
    cmd += [
        "--teacher-pairs",
        "4",
        "--batch-pairs",
        "16",
        "--repeats",
        "2",
        "--student",
        str(tmp_path / "student"),
        "-o",
        str(tmp_path / "results"),
    ]
    env = {**os.environ, "QRELKIT_PROGRESS": "0", "QRELKIT_API_KEY": "sk-test"}
    with FakeOpenAI(grade_for=lambda text: 2) as server:
        cmd += ["--endpoint", f"{server.url}#gpt-4o-mini"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert result["pairs"] == 60 and result["max_length"] == 256 and result["matmul_peak_gflops"] > 0
    assert isinstance(result["machine"], str) and result["machine"]
    runs = {r["runtime"]: r for r in result["runs"]}
    students = ("pytorch-fp32", "onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-mixed")
    assert set(runs) == {"llama.cpp", "http", *students, "onnxruntime-int8-checked"}
    api = runs["http"]
    assert api["role"] == "teacher" and api["pairs"] == 4 and api["failures"] == 0 and len(server.requests) >= 4
    assert api["usd_per_1k_pairs"] > 0, "an API teacher is priced per token (gpt-4o-mini is in the table)"
    assert runs["llama.cpp"]["role"] == "teacher" and runs["llama.cpp"]["pairs"] == 4
    assert runs["llama.cpp"]["efficiency"] is None
    for name in students:
        r = runs[name]
        assert r["role"] == "student" and r["pairs"] == 60 and "grades" not in r
        assert r["pairs_per_s"] > 0 and r["p95_batch_ms"] >= r["p50_batch_ms"] > 0
        assert r["peak_rss_mb"] > 100 and r["usd_per_1k_pairs"] > 0 and r["efficiency"] > 0
        assert r["speedup_vs_local_teacher"] == pytest.approx(r["pairs_per_s"] / runs["llama.cpp"]["pairs_per_s"])
        assert r["vs_human"]["n"] == 60
        assert len(r["pass_seconds"]) == 2 and r["pairs_per_s"] == pytest.approx(60 / min(r["pass_seconds"]))
    assert result["repeats"] == 2
    assert runs["onnxruntime-fp32"]["vs_pytorch_fp32"]["exact"] == 1.0, "fp32 ONNX gives the PyTorch grades"
    assert runs["onnxruntime-int8"]["vs_pytorch_fp32"]["exact"] >= 0.9
    checked = runs["onnxruntime-int8-checked"]  # its FLOPs are not all counted: no efficiency
    assert checked["pairs"] == 60 and checked["efficiency"] is None and 0 <= checked["rescored_share"] <= 1
    assert checked["vs_pytorch_fp32"]["exact"] >= runs["onnxruntime-int8"]["vs_pytorch_fp32"]["exact"]
    table = Path(tmp_path / "results" / "bench.md").read_text()
    assert table.count("| student") == 5 and "onnxruntime-int8" in table and "% in fp32)" in table
    assert "fastest of 2 passes" in table


def test_device_bench_names_students_apart_by_the_fewest_path_parts():
    from qrelkit.bench import short_names

    one = [Path("/r/.cross-work/ce-a/fold0.student")]
    assert list(short_names(one)) == ["fold0.student"]
    two = [*one, Path("/r/.cross-work/ce-b/fold0.student")]
    assert list(short_names(two)) == ["ce-a/fold0.student", "ce-b/fold0.student"]
    with pytest.raises(QrelkitError, match="twice"):
        short_names([one[0], one[0]])


def _own_peak() -> dict[str, float]:
    return {"peak_rss_mb": _peak_rss_mb()}


def test_a_bench_child_reports_its_own_peak_memory_not_its_parents():
    ballast = np.ones(1024 * 2**20 // 8)  # the parent holds 1 GiB, as after training a bench student
    child = _in_fresh_process(_own_peak)["peak_rss_mb"]
    assert ballast.sum() > 0 and _peak_rss_mb() > 1024 > child > 10
