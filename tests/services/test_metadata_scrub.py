"""Metadata scrubbing: every free-text value of a file's header in one run of the tagger."""

from __future__ import annotations

from typing import Any

import pytest

from clinic_app.io.deid import text as text_module
from clinic_app.services.ingest import scrub_metadata


def test_a_header_is_scrubbed_with_one_tagger_run_and_structured_values_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[str] = []
    tag = text_module._tagger_spans

    def counting(text: str) -> Any:
        runs.append(text)
        return tag(text)

    monkeypatch.setattr(text_module, "_tagger_spans", counting)
    metadata = {
        "operator": "Operator: Jane Doe",
        "referral": ["Referred by Maria Garcia on 03/04/2021", "Hannah Okafor"],
        "record": "MRN 12345678",
        "dx_snomed": ["164889003"],
        "sex": "F",
        "age": 93,
        "device": {"model": "12 lead resting", "channels": 12},
    }
    scrubbed = scrub_metadata(metadata, 30)
    assert len(runs) == 1  # one run for all seven strings (it was one per string)
    assert scrubbed["operator"] == "Operator: [NAME]"
    assert scrubbed["referral"] == ["Referred by [NAME] on 04/03/2021", "[NAME]"]
    assert scrubbed["record"] == "MRN [ID]"
    assert scrubbed["dx_snomed"] == ["164889003"] and scrubbed["sex"] == "F"
    assert scrubbed["age"] == "90+"
    assert scrubbed["device"] == {"model": "12 lead resting", "channels": 12}
    assert scrub_metadata({}, 30) == {} and scrub_metadata("Dr John Smith", 5) == "Dr [NAME]"
