"""The Ray Data engine (local mode, 2 CPUs, a pool of student actors) gives the single-process engine's labels."""

from __future__ import annotations

import json
import shutil

import pytest
from test_label_stream import model_dir, write_pairs_jsonl  # noqa: F401 - fixture

from qrelkit.errors import QrelkitError
from qrelkit.io import write_pairs
from qrelkit.pipeline import label_file
from qrelkit.students.onnx import export_onnx

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory, model_dir):  # noqa: F811
    """The student with its ONNX models (a copy: the shared fixture stays torch-only)."""
    folder = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(model_dir, folder)
    export_onnx(folder)
    return folder


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_ray_engine_labels_equal_local_engine(tmp_path, model_dir, exported_dir):  # noqa: F811
    import ray

    write_pairs(tmp_path / "pairs.parquet", write_pairs_jsonl(tmp_path / "pairs.jsonl", 300))
    runs = {"torch": model_dir, "onnx-int8-checked": exported_dir}
    ray_input = {"torch": "pairs.jsonl", "onnx-int8-checked": "pairs.parquet"}  # Parquet once hung: see label_ray
    local = {
        rt: label_file(tmp_path / "pairs.jsonl", m, tmp_path / f"local-{rt}.jsonl", runtime=rt, chunk=64)
        for rt, m in runs.items()
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stats = {
            rt: label_file(
                tmp_path / ray_input[rt],
                m,
                tmp_path / f"ray-{rt}.jsonl",
                runtime=rt,
                engine="ray",
                actors=2,
                batch_size=32,
            )
            for rt, m in runs.items()
        }
        assert ray.is_initialized(), "a Ray session the caller started is left running"
    finally:
        ray.shutdown()
    for rt in runs:
        assert stats[rt]["pairs"] == local[rt]["pairs"] == 300 and stats[rt]["engine"] == "ray"
        rows_local, rows_ray = _rows(tmp_path / f"local-{rt}.jsonl"), _rows(tmp_path / f"ray-{rt}.jsonl")
        assert [(r["qid"], r["doc_id"], r["grade"]) for r in rows_ray] == [
            (r["qid"], r["doc_id"], r["grade"]) for r in rows_local
        ], rt
        if rt == "torch":  # int8 scores move with the pairs that share a batch (activation scales are per batch)
            assert max(abs(a["score"] - b["score"]) for a, b in zip(rows_ray, rows_local, strict=True)) < 1e-4
    # both engines say how many pairs the checked runtime graded again in fp32 (this toy student's scores lie far
    # from its cut points: none; test_checked.py counts them where some are near)
    checked = [stats["onnx-int8-checked"]["rescored_in_fp32"], local["onnx-int8-checked"]["rescored_in_fp32"]]
    assert checked == [0, 0]
    assert "rescored_in_fp32" not in stats["torch"] and "rescored_in_fp32" not in local["torch"]


def test_an_actor_runs_onnx_on_its_share_of_the_cores(exported_dir, monkeypatch):
    """Each actor's ONNX Runtime sessions take the actor's whole cores, not every core of the node (two actors
    on two cores each spinning two threads fight over them)."""
    import torch

    from qrelkit.label_ray import StudentScorer

    monkeypatch.delenv("QRELKIT_THREADS", raising=False)  # restored after the test, as the scorer changes it
    torch_threads = torch.get_num_threads()
    try:
        checked = StudentScorer(str(exported_dir), "onnx-int8-checked", 32, 1).student
    finally:
        torch.set_num_threads(torch_threads)
    for student in (checked.fast, checked.exact):
        assert student.encoder.session.get_session_options().intra_op_num_threads == 1


def test_a_one_cpu_cluster_refuses_parquet_instead_of_waiting_forever(tmp_path, model_dir):  # noqa: F811
    import ray

    write_pairs(tmp_path / "pairs.parquet", write_pairs_jsonl(tmp_path / "pairs.jsonl", 10))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(QrelkitError, match="has 1 CPU: a Parquet read needs one whole CPU"):
            label_file(tmp_path / "pairs.parquet", model_dir, tmp_path / "labels.qrels", engine="ray", actors=1)
    finally:
        ray.shutdown()
