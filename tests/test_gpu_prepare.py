"""benchmarks/gpu_prepare.py: what a GPU session carries to the device machine, in pieces that fit its calls."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qrelkit.errors import QrelkitError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
try:
    import gpu_prepare
finally:
    sys.path.pop(0)

MiB = gpu_prepare.MiB


def test_pieces_are_as_large_as_the_working_tree_leaves_room_for():
    assert gpu_prepare.piece_size(6 * MiB) == 48 * MiB, "a lean tree: the largest pieces"
    assert gpu_prepare.piece_size(47 * MiB + 5) == 14 * MiB, "whole MiB, under 64 MiB with the tree and a margin"
    with pytest.raises(SystemExit, match="aside"):
        gpu_prepare.piece_size(57 * MiB)


def test_a_file_split_into_pieces_is_joined_and_checked(tmp_path):
    blob = tmp_path / "model.gguf"
    blob.write_bytes(np.random.default_rng(0).bytes(3 * MiB + 7))
    assert gpu_prepare.split(blob, tmp_path / "pieces", piece=MiB) == 4
    joined = gpu_prepare.join(tmp_path / "pieces", tmp_path / "cache")
    assert joined == tmp_path / "cache" / "models" / "model.gguf"
    assert joined.read_bytes() == blob.read_bytes()
    (tmp_path / "pieces" / "part04").unlink()
    manifest = json.loads((tmp_path / "pieces" / "manifest.json").read_text())
    (tmp_path / "pieces" / "manifest.json").write_text(json.dumps({**manifest, "parts": 3}))
    joined.unlink()
    with pytest.raises(QrelkitError, match="sha256"):
        gpu_prepare.join(tmp_path / "pieces", tmp_path / "cache")


def test_gpu_staging_round_trip_keeps_the_encoder(tmp_path):
    """An encoder travels to the GPU machine as fp16 pieces and is put back in fp32: the joined folder loads and
    embeds as the shipped one (fp16 rounding only), in the cache folder qrelkit reads."""
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from qrelkit.models import minilm_path

    pieces = tmp_path / "weights" / "all-MiniLM-L6-v2"
    parts = gpu_prepare.stage_encoder("all-MiniLM-L6-v2", pieces)
    assert parts == 1 and (pieces / "part01").stat().st_size < 50 * 2**20, "fp16 MiniLM fits one device call"
    assert json.loads((pieces / "manifest.json").read_text())["folder"] == "all-MiniLM-L6-v2"
    blob = bytearray((pieces / "part01").read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one weight byte damaged in transfer
    (pieces / "part01").write_bytes(bytes(blob))
    with pytest.raises(QrelkitError, match="sha256"):
        gpu_prepare.join(pieces, tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "all-MiniLM-L6-v2").exists(), "a corrupt piece leaves no model"
    gpu_prepare.stage_encoder("all-MiniLM-L6-v2", pieces)
    folder = gpu_prepare.join(pieces, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "models" / "all-MiniLM-L6-v2"
    assert not list((tmp_path / "cache" / "models").glob("*.tar")), "the joined tar is not kept"
    weights = load_file(folder / "model.safetensors")
    assert {str(t.dtype) for t in weights.values() if t.is_floating_point()} == {"torch.float32"}
    texts = ["how do vaccines train the immune system", "a vaccine exposes the immune system to an antigen"]
    shipped = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts)
    joined = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(joined, shipped, atol=2e-3)


def test_result_qrels_step_aside_for_the_device_calls_and_come_back(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    results = repo / "benchmarks" / "results" / "toy"
    results.mkdir(parents=True)
    (results / "student.qrels").write_text("q1 0 d1 2\n")
    (results / "report.md").write_text("# report\n")
    (repo / "README.md").write_text("readme\n")
    (repo / ".gitignore").write_text(".gpu/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    before = {f.relative_to(repo) for f in gpu_prepare.tree_files(repo)}
    moved = gpu_prepare.aside(repo)
    assert moved == [Path("benchmarks/results/toy/student.qrels")]
    after = {f.relative_to(repo) for f in gpu_prepare.tree_files(repo)}
    assert after == before - set(moved), "only the result qrels leave the tree; nothing under .gpu/ travels"
    assert gpu_prepare.back(repo) == 1
    assert (results / "student.qrels").read_text() == "q1 0 d1 2\n"
    assert not (repo / ".gpu" / "aside").exists()


def test_staging_refuses_before_downloading_wheels_when_the_data_cannot_fit(tmp_path, monkeypatch):
    def data_of(size: int):
        def stage_data(_root: Path, out: Path) -> None:
            out.mkdir(parents=True)
            (out / "pairs.bin").write_bytes(np.random.default_rng(0).bytes(size))  # incompressible

        return stage_data

    downloads = []
    monkeypatch.setattr(gpu_prepare, "stage_wheels", lambda out: downloads.append(out) or out.mkdir(parents=True))
    monkeypatch.setattr(gpu_prepare, "tree_bytes", lambda: gpu_prepare.LIMIT - gpu_prepare.MARGIN - 8 * MiB)
    monkeypatch.setattr(gpu_prepare, "stage_data", data_of(9 * MiB))
    with pytest.raises(SystemExit, match="aside"):
        gpu_prepare.stage(tmp_path / "shared", tmp_path / "a", bases=[])
    assert downloads == [], "the wheels were downloaded for a call that could not carry the data anyway"
    monkeypatch.setattr(gpu_prepare, "stage_data", data_of(1 * MiB))
    gpu_prepare.stage(tmp_path / "shared", tmp_path / "b", bases=[])
    assert downloads == [tmp_path / "b" / "wheels"]
