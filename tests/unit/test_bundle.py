from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model.bundle import verify_bundle, write_metadata
from model.errors import BundleError


def make_bundle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"variant": "tiny"}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"\x00weights" * 100)
    (folder / "model_card.md").write_text("# Tiny model\n", encoding="utf-8")
    write_metadata(folder, {"name": "tiny-fusion", "version": "0.0.1"})
    return folder


def test_written_bundle_verifies_and_its_sha256_covers_every_file(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "tiny")
    info = verify_bundle(folder)
    assert (info.name, info.version, info.format_version) == ("tiny-fusion", "0.0.1", 1)
    assert set(info.files) == {"config.json", "model.safetensors", "model_card.md"}
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert info.files["model.safetensors"] == expected
    assert info.sha256 == hashlib.sha256((folder / "metadata.json").read_bytes()).hexdigest()


def test_a_changed_file_is_refused_by_name(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "tiny")
    (folder / "model.safetensors").write_bytes(b"\x00tampered" * 100)
    with pytest.raises(BundleError, match=r"altered: model\.safetensors"):
        verify_bundle(folder)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "tiny")
    (folder / "model_card.md").unlink()
    with pytest.raises(BundleError, match=r"incomplete: model_card\.md is missing"):
        verify_bundle(folder)


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"pickle")
    with pytest.raises(BundleError, match="pickle checkpoint"):
        write_metadata(folder, {"name": "x", "version": "1"})


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"name": "x"}', "lacks the required keys: version, format_version, files"),
        ('{"name": "x", "version": "1", "format_version": 99, "files": {"a": "b"}}', "format"),
        ('{"name": "x", "version": "1", "format_version": 1, "files": {"../a": "b"}}', "outside"),
    ],
)
def test_bad_metadata_is_a_clear_error(tmp_path: Path, metadata: str, message: str) -> None:
    (tmp_path / "metadata.json").write_text(metadata, encoding="utf-8")
    with pytest.raises(BundleError, match=message):
        verify_bundle(tmp_path)


def test_missing_folder_and_metadata(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match=r"no metadata\.json"):
        verify_bundle(tmp_path)


def test_metadata_round_trips_extra_keys(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "tiny")
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["name"] == "tiny-fusion"
    assert verify_bundle(folder).metadata["files"] == meta["files"]
