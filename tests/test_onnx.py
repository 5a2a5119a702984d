"""The student in ONNX Runtime (fp32 and int8) gives the labels of the PyTorch student."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import onnx
import pytest
from test_student import TOPICS, topic_pairs

from qrelkit.distill import distill
from qrelkit.errors import QrelkitError
from qrelkit.io import read_qrels, write_pairs
from qrelkit.students import load_student
from qrelkit.students.checked import CheckedLabeler
from qrelkit.students.encoder import FEATURES, LATE_FEATURES, Student
from qrelkit.students.onnx import (
    INT8_MIN_CORRELATION,
    OnnxEncoder,
    TokenizerFile,
    _correlation,
    _quantize,
    dropped_runtimes,
    export_onnx,
    length_batches,
    padded_inputs,
    probe_pairs,
)


@pytest.mark.slow
def test_onnx_fp32_and_int8_students_match_torch(tmp_path):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    distill(train, teacher).save(tmp_path / "model")
    with pytest.raises(QrelkitError, match="run `qrelkit export"):
        Student.load(tmp_path / "model", runtime="onnx")
    files = export_onnx(tmp_path / "model")
    assert files["onnx-int8"].stat().st_size < files["onnx"].stat().st_size / 2, "int8 weights are ~4× smaller"
    report = json.loads((tmp_path / "model" / "export.json").read_text())
    assert report["onnx-int8"]["kept"] and report["onnx-int8"]["per_channel"], "MiniLM keeps per-channel int8"
    assert report["onnx-int8"]["r_with_fp32"] >= INT8_MIN_CORRELATION and report["onnx-int8-mixed"]["kept"]
    test, _ = topic_pairs(names)
    ref_scores, ref_grades = Student.load(tmp_path / "model").predict_pairs(test)
    fp32 = Student.load(tmp_path / "model", runtime="onnx")
    scores, grades = fp32.predict_pairs(test, batch_size=5)  # batches of mixed lengths: padding must not matter
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
    assert (grades == ref_grades).all()
    q = Student.load(tmp_path / "model", runtime="onnx-int8")
    int8_scores, _ = q.predict_pairs(test)
    assert np.corrcoef(int8_scores, ref_scores)[0, 1] > 0.98
    mixed = Student.load(tmp_path / "model", runtime="onnx-int8-mixed")
    mixed_scores, _ = mixed.predict_pairs(test)
    size = files["onnx-int8-mixed"].stat().st_size
    assert files["onnx-int8"].stat().st_size < size < files["onnx"].stat().st_size, "some layers stay fp32"
    assert np.abs(mixed_scores - ref_scores).mean() < np.abs(int8_scores - ref_scores).mean(), "closer to fp32"
    with pytest.raises(QrelkitError, match="unknown runtime"):
        Student.load(tmp_path / "model", runtime="tensorrt")
    # checked: int8's grades, and fp32's (scores too) for the pairs int8 scored within the margin of a cut point
    loaded = load_student(tmp_path / "model", runtime="onnx-int8-checked")
    assert isinstance(loaded, CheckedLabeler) and 0 < loaded.margin < 0.2
    # the toy pairs' scores lie far from the cut points: a margin that reaches half of them tests the wiring
    distance = np.abs(int8_scores[:, None] - np.array(loaded.cut_points)[None, :]).min(axis=1)
    checked = CheckedLabeler(loaded.fast, loaded.exact, margin=float(np.median(distance)))
    checked_scores, checked_grades = checked.predict_pairs(test)
    near = checked.near_cut_points(int8_scores)
    far = np.setdiff1d(np.arange(len(test)), near)
    assert checked.rescored == len(near) > 0
    np.testing.assert_allclose(checked_scores[near], scores[near], atol=1e-6)
    np.testing.assert_allclose(checked_scores[far], int8_scores[far], atol=1e-6)
    int8_grades = q.grades_from_scores(int8_scores)
    assert (checked_grades == grades).sum() >= (int8_grades == grades).sum()
    with pytest.raises(QrelkitError, match="runs two models: load it with"):
        Student.load(tmp_path / "model", runtime="onnx-int8-checked")
    # `qrelkit label` on an ONNX runtime imports neither torch nor transformers (4 s and 220 MB it would not use)
    write_pairs(tmp_path / "pairs.parquet", test)
    code = """import sys
from qrelkit.cli import main
sys.argv = ["qrelkit", "label", "pairs.parquet", "-m", "model", "-o", "labels.qrels", "--runtime", "onnx-int8-checked"]
try:
    main()
except SystemExit as e:
    assert e.code == 0, e.code
print(sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules), file=sys.stderr)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip().endswith("[]"), r.stderr
    assert read_qrels(tmp_path / "labels.qrels") == {
        (p.qid, p.doc_id): int(g) for p, g in zip(test, checked_grades, strict=True)
    }


def test_the_onnx_runtimes_tokenize_as_transformers_does():
    from transformers import AutoTokenizer

    from qrelkit.models import minilm_path

    folder = minilm_path()
    ours, theirs = TokenizerFile(folder), AutoTokenizer.from_pretrained(str(folder))
    queries, docs = (list(x) for x in zip(*probe_pairs(), strict=True))  # 150 judged demo pairs
    for n in (256, 16):  # whole passages, and passages cut short
        assert ours(docs, truncation=True, max_length=n) == {
            k: theirs(docs, truncation=True, max_length=n)[k] for k in ("input_ids", "token_type_ids")
        }
    pairs = ours(queries, docs, truncation="longest_first", max_length=64)
    reference = theirs(queries, docs, truncation="longest_first", max_length=64)
    assert pairs == {k: reference[k] for k in ("input_ids", "token_type_ids")} and max(
        map(max, pairs["token_type_ids"])
    )
    assert (ours.pad_token_id, len(ours), ours.all_special_ids) == (
        theirs.pad_token_id,
        len(theirs),
        sorted(theirs.all_special_ids),
    )
    assert ours.convert_ids_to_tokens(range(len(ours))) == theirs.convert_ids_to_tokens(list(range(len(theirs))))


def _tiny_matmul_model(path):
    """A one-MatMul ONNX graph (x @ W, W 4×4): something to quantize in milliseconds."""
    rng = np.random.default_rng(0)
    weight = onnx.numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "W")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x], [y], [weight])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_an_int8_model_that_does_not_track_fp32_is_dropped_with_the_reason(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fp32 = tmp_path / "encoder.onnx"
    _tiny_matmul_model(fp32)
    reference = np.linspace(0.0, 1.0, 20)
    tried = []

    def scores(model):  # fp32 scores the probes in order; the int8 models scramble them
        tried.append(model.name)
        return reference if model == fp32 else reference[::-1]

    assert _quantize(fp32, tmp_path, scores=scores) == {}
    assert tried == ["encoder.onnx"] + ["encoder.int8.onnx"] * 2 + ["encoder.int8-mixed.onnx"] * 2, (
        "per channel, then per tensor"
    )
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["onnx-int8"] == {
        "file": "encoder.int8.onnx",
        "per_channel": False,
        "r_with_fp32": -1.0,
        "kept": False,
    }
    assert not (tmp_path / "encoder.int8.onnx").exists() and not (tmp_path / "encoder.int8-mixed.onnx").exists()
    assert "dropped: int8 scores correlate with fp32's at r -1.000" in caplog.text, "qrelkit's warning is shown"
    assert "pre-processing" not in caplog.text, "the quantizer's advice on its root logger is not"
    assert dropped_runtimes(tmp_path) == {"onnx-int8": -1.0, "onnx-int8-mixed": -1.0, "onnx-int8-checked": -1.0}
    with pytest.raises(QrelkitError, match=r"not kept at export.*r -1\.0.*use --runtime onnx"):
        OnnxEncoder(tmp_path / "encoder.int8.onnx", tokenizer=None)
    # a faithful int8 model is kept on the first try
    kept = _quantize(fp32, tmp_path, scores=lambda model: reference)
    assert set(kept) == {"onnx-int8", "onnx-int8-mixed"} and kept["onnx-int8"].exists()
    assert dropped_runtimes(tmp_path) == {}


def test_a_constant_model_agrees_only_with_another_constant_one():
    flat, ramp = np.full(5, 0.5), np.linspace(0, 1, 5)
    assert _correlation(flat, flat) == 1.0 and _correlation(flat, ramp) == 0.0 and _correlation(ramp, flat) == 0.0
    assert _correlation(ramp, 2 * ramp + 1) == pytest.approx(1.0)


def test_batches_go_longest_first_within_the_token_budget_and_pad_to_their_longest():
    lengths = [3, 10, 5, 10, 2, 40]
    batches = list(length_batches(lengths, batch_size=3, token_budget=30))
    # 40 tokens exceed the budget: alone; two of 10 fit 30 tokens thrice, capped at 3 texts; then the short ones
    assert batches == [[5], [1, 3, 2], [0, 4]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    feed = padded_inputs(
        [[7, 8, 9], [7]],
        pad_id=0,
        input_names={"input_ids", "attention_mask", "token_type_ids"},
        token_types=[[0, 1, 1], [0]],
    )
    assert feed["input_ids"].tolist() == [[7, 8, 9], [7, 0, 0]]
    assert feed["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert feed["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert set(padded_inputs([[1]], 0, {"input_ids", "attention_mask"})) == {"input_ids", "attention_mask"}


def test_probe_pairs_are_the_embedded_demo_judgments():
    pairs = probe_pairs()
    assert len(pairs) == 150 and len({q for q, _ in pairs}) == 25
    assert all(q.strip() and len(d.split()) > 5 for q, d in pairs)


@pytest.mark.slow
def test_a_late_interaction_student_saves_loads_and_exports_with_its_token_features(tmp_path):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    distill(train, teacher, late_interaction=False).save(tmp_path / "plain")
    student = distill(train, teacher)  # late interaction: the default
    assert student.feature_names == FEATURES + LATE_FEATURES
    assert student.head["features"] == list(FEATURES + LATE_FEATURES)
    student.save(tmp_path / "late")
    test, truth = topic_pairs(names)
    ref_scores, ref_grades = student.predict_pairs(test)
    gold = np.array([truth[(p.qid, p.doc_id)] for p in test])
    assert ref_scores[gold == 3].min() > ref_scores[gold == 0].max()
    again = Student.load(tmp_path / "late")
    np.testing.assert_allclose(again.predict_pairs(test)[0], ref_scores, atol=1e-6)
    export_onnx(tmp_path / "late")
    fp32 = Student.load(tmp_path / "late", runtime="onnx")
    scores, grades = fp32.predict_pairs(test, batch_size=5)  # mixed lengths: padded tokens must not be matched
    np.testing.assert_allclose(scores, ref_scores, atol=1e-3)  # token vectors travel in fp16
    assert (grades == ref_grades).all()
    int8 = Student.load(tmp_path / "late", runtime="onnx-int8")
    assert np.corrcoef(int8.predict_pairs(test)[0], ref_scores)[0, 1] > 0.98
    # a folder exported before the token output (one output): a plain student runs it, a late one says how to mend
    export_onnx(tmp_path / "plain", quantize=False)
    old_graph = onnx.load(str(tmp_path / "plain" / "encoder.onnx"))
    del old_graph.graph.output[1]
    onnx.save(old_graph, str(tmp_path / "plain" / "encoder.onnx"))
    plain = Student.load(tmp_path / "plain", runtime="onnx")
    np.testing.assert_allclose(
        plain.predict_pairs(test)[0], Student.load(tmp_path / "plain").predict_pairs(test)[0], atol=1e-4
    )
    onnx.save(old_graph, str(tmp_path / "late" / "encoder.onnx"))
    with pytest.raises(QrelkitError, match="without token vectors"):
        Student.load(tmp_path / "late", runtime="onnx")
