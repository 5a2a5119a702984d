"""The student in ONNX Runtime (fp32 and int8) gives the labels of the PyTorch student."""

from __future__ import annotations

import numpy as np
import pytest
from test_student import TOPICS, topic_pairs

from qrelkit.distill import distill
from qrelkit.errors import QrelkitError
from qrelkit.students.encoder import Student
from qrelkit.students.onnx import export_onnx


@pytest.mark.slow
def test_onnx_fp32_and_int8_students_match_torch(tmp_path):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    distill(train, teacher).save(tmp_path / "model")
    with pytest.raises(QrelkitError, match="run `qrelkit export"):
        Student.load(tmp_path / "model", runtime="onnx")
    files = export_onnx(tmp_path / "model")
    assert files["onnx-int8"].stat().st_size < files["onnx"].stat().st_size / 2, "int8 weights are ~4× smaller"
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
