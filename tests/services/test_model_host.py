"""The model runs in a child process: answers, cancels, crashes and plain results."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest

from clinic_app.config.assets import asset_path
from clinic_app.domain.errors import Cancelled, InputError, ModelError
from clinic_app.services.model_host import ModelHost, ModelRequest

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
BUNDLE = asset_path("bundles", "clinicfusion-demo")
CHEST_PAIN = "Chest pain at rest, radiating to the left arm, with sweating."
SYNCOPE = "Syncope while standing, no prodrome, brief loss of consciousness."
DYSPNOEA = "Dyspnoea on exertion for three weeks, worse lying flat."


def top_label(prediction: Any, request: ModelRequest) -> dict[str, Any]:
    """Runs in the child: a plain result, so the parent never unpickles model classes."""
    return {
        "top": prediction.suggestions[0].display,
        "used": list(prediction.modalities_used),
        "explained": prediction.explanation is not None,
        "case_id": request.case_id,
    }


@pytest.fixture(scope="module")
def host() -> Any:
    host = ModelHost()
    yield host
    host.close()


def test_loads_the_bundle_and_predicts_in_the_child_without_torch_here(host: ModelHost) -> None:
    loaded = host.load(BUNDLE)
    assert loaded.name == "clinicfusion-demo" and loaded.device == "cpu"
    result = host.predict(
        ModelRequest(
            str(BUNDLE),
            ecg_path=str(TEST_FILES / "waveform_ecg.dcm"),
            note="Palpitations for two days; irregular pulse on examination.",
            case_id="C1",
        ),
        top_label,
    )
    assert result["case_id"] == "C1" and result["explained"] is True
    assert set(result["used"]) == {"ecg", "note"}
    if "torch" not in sys.modules:  # other tests in this process may have imported it
        assert "model.predictor" not in sys.modules


def test_a_bad_input_is_an_input_error_and_the_child_keeps_serving(
    host: ModelHost, tmp_path: Path
) -> None:
    bad = tmp_path / "not-an-ecg.dcm"
    bad.write_bytes(b"DICM but not really")
    with pytest.raises((InputError, ModelError)):
        host.predict(ModelRequest(str(BUNDLE), ecg_path=str(bad)), top_label)
    again = host.predict(
        ModelRequest(str(BUNDLE), note=CHEST_PAIN),
        top_label,
    )
    assert again["used"] == ["note"]


def test_cancel_returns_at_once_and_a_late_answer_is_dropped(host: ModelHost) -> None:
    started = time.monotonic()
    with pytest.raises(Cancelled):
        host.predict(
            ModelRequest(str(BUNDLE), ecg_path=str(TEST_FILES / "waveform_ecg.dcm")),
            top_label,
            cancel=lambda: True,
        )
    assert time.monotonic() - started < 2.0
    # the cancelled request's answer arrives later and must not be taken for this one
    result = host.predict(
        ModelRequest(
            str(BUNDLE),
            note=SYNCOPE,
            case_id="C2",
        ),
        top_label,
    )
    assert result["case_id"] == "C2"


def test_a_crashed_child_is_one_model_error_and_the_next_call_restarts_it(
    host: ModelHost,
) -> None:
    host.load(BUNDLE)
    assert host._process is not None
    os.kill(host._process.pid, signal.SIGKILL)
    with pytest.raises(ModelError, match="stopped unexpectedly"):
        host.predict(
            ModelRequest(str(BUNDLE), note=DYSPNOEA),
            top_label,
        )
    result = host.predict(
        ModelRequest(
            str(BUNDLE),
            note=DYSPNOEA,
            case_id="C3",
        ),
        top_label,
    )
    assert result["case_id"] == "C3"
