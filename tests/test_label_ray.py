"""The Ray Data engine (local mode, 2 CPUs, a pool of student actors) gives the single-process engine's labels."""

from __future__ import annotations

import json

import pytest
from test_label_stream import model_dir, write_pairs_jsonl  # noqa: F401 - fixture

from qrelkit.pipeline import label_file

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_ray_engine_labels_equal_local_engine(tmp_path, model_dir):  # noqa: F811
    import ray

    write_pairs_jsonl(tmp_path / "pairs.jsonl", 300)
    local = label_file(tmp_path / "pairs.jsonl", model_dir, tmp_path / "local.jsonl", chunk=64)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stats = label_file(
            tmp_path / "pairs.jsonl", model_dir, tmp_path / "ray.jsonl", engine="ray", actors=2, batch_size=32
        )
        assert ray.is_initialized(), "a Ray session the caller started is left running"
    finally:
        ray.shutdown()
    assert stats["pairs"] == local["pairs"] == 300 and stats["engine"] == "ray"
    rows_local = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    rows_ray = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [(r["qid"], r["doc_id"], r["grade"]) for r in rows_ray] == [
        (r["qid"], r["doc_id"], r["grade"]) for r in rows_local
    ]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(rows_ray, rows_local, strict=True)) < 1e-4
