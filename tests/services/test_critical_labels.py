"""Critical labels: the bundle flags them, the triage worklist ranks cases by them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clinic_app.config.assets import shipped_bundles_dir
from clinic_app.domain.errors import ModelError
from clinic_app.services.model_bundles import critical_codes
from model.config import FusionConfig, LabelSpec

SNOMED = "http://snomed.info/sct"


def test_shipped_bundle_flags_atrial_fibrillation_and_malignancy() -> None:
    codes = critical_codes(shipped_bundles_dir() / "clinicfusion-demo")
    assert codes == {f"{SNOMED}|164889003", f"{SNOMED}|363346000"}


def test_a_hand_edited_flag_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundles_dir() / "clinicfusion-demo", bundle)
    meta_path = bundle / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["labels"][0]["critical"] = True  # sinus rhythm made "critical" without re-signing
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="altered"):
        critical_codes(bundle)


def test_label_critical_flag_round_trips_through_the_config() -> None:
    config = FusionConfig(labels=(LabelSpec(SNOMED, "164889003", "Atrial fibrillation", True),))
    again = FusionConfig.from_dict(json.loads(config.to_json()))
    assert again.labels[0].critical is True
    old_style = config.to_dict()
    del old_style["labels"][0]["critical"]  # bundles written before the flag existed
    assert FusionConfig.from_dict(old_style).labels[0].critical is False
