"""The report as FHIR R4 JSON: a Bundle validated by the fhir.resources R4B models."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest

from clinic_app.domain.errors import InputError
from clinic_app.reporting.data import COMPOSITE_NOTICE, INTENDED_USE, ReportData
from clinic_app.reporting.fhir import SNOMED, diagnostic_report
from tests.reporting import sample


@pytest.fixture(scope="module")
def data() -> ReportData:
    return sample.report_data(slide=False, ecg=False)


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_bundle_validates_and_has_one_observation_per_suggestion(data: ReportData) -> None:
    from fhir.resources.R4B.bundle import Bundle

    pdf = b"%PDF-1.7\nnot really a report\n%%EOF\n"
    bundle = diagnostic_report(data, pdf=pdf)
    Bundle.model_validate(bundle)  # the returned JSON validates again
    json.dumps(bundle)  # plain JSON types only
    assert bundle["type"] == "collection"
    (report,) = _resources(bundle, "DiagnosticReport")
    observations = _resources(bundle, "Observation")
    (device,) = _resources(bundle, "Device")
    assert len(observations) == len(data.suggestions)
    for item, observation in zip(data.suggestions, observations, strict=True):
        (coding,) = observation["code"]["coding"]
        assert (coding["system"], coding["code"], coding["display"]) == (
            SNOMED,
            item.code,
            item.display,
        )
        quantity = observation["valueQuantity"]
        assert quantity["system"] == "http://unitsofmeasure.org" and quantity["code"] == "%"
        assert quantity["value"] == pytest.approx(item.calibrated_probability * 100)
        raw = observation["component"][0]
        assert raw["code"]["coding"][0]["code"] == "raw-probability"
        assert raw["valueQuantity"]["value"] == pytest.approx(item.probability * 100)
        assert observation["device"]["reference"] == f"urn:uuid:{device['id']}"
        assert sample.MODEL_VERSION in observation["method"]["text"]
        notes = [n["text"] for n in observation["note"]]
        assert INTENDED_USE in notes and COMPOSITE_NOTICE in notes
        assert observation["meta"]["tag"][0]["code"] == "composite-demo"
        interpretation = observation.get("interpretation")
        assert (interpretation is not None) == item.abstained
        if interpretation:
            assert interpretation[0]["coding"][0]["code"] == "IND"
    assert [r["reference"] for r in report["result"]] == [
        f"urn:uuid:{o['id']}" for o in observations
    ]
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "47045-0"
    assert report["subject"]["identifier"]["value"] == data.patient_pseudonym
    assert "reference" not in report["subject"]  # no Patient resource, pseudonym only
    assert data.sign_off is not None
    assert report["conclusion"] == data.sign_off.final_impression
    assert report["resultsInterpreter"][0]["display"] == "dr.rossi"
    codes = {c["coding"][0]["code"] for c in report["conclusionCode"]}
    assert codes == {"426783006", "1156654007"}  # accepted + override diagnosis
    (form,) = report["presentedForm"]
    assert base64.b64decode(form["data"]) == pdf
    assert base64.b64decode(form["hash"]) == hashlib.sha1(pdf).digest()
    assert form["contentType"] == "application/pdf" and form["size"] == len(pdf)
    assert report["issued"] == "2026-03-02T10:00:12Z"
    assert "Composite demo case" in report["text"]["div"]
    assert INTENDED_USE in report["text"]["div"]
    assert device["identifier"][0]["value"] == data.model.bundle_sha256  # type: ignore[union-attr]


def test_unsigned_and_unanalysed_reports(data: ReportData) -> None:
    unsigned = diagnostic_report(dataclasses.replace(data, sign_off=None, is_composite_demo=False))
    (report,) = _resources(unsigned, "DiagnosticReport")
    assert report["status"] == "preliminary"
    assert "conclusion" not in report and "presentedForm" not in report
    assert "meta" not in report
    assert all(o["status"] == "preliminary" for o in _resources(unsigned, "Observation"))
    bare = diagnostic_report(
        sample.report_data(analysed=False, signed=False, slide=False, ecg=False)
    )
    assert [e["resource"]["resourceType"] for e in bare["entry"]] == ["DiagnosticReport"]


def test_the_same_data_gives_the_same_json(data: ReportData) -> None:
    assert diagnostic_report(data) == diagnostic_report(data)


def test_invalid_content_is_a_clinic_error_naming_the_field(data: ReportData) -> None:
    bad = dataclasses.replace(
        data,
        suggestions=(dataclasses.replace(data.suggestions[0], code=" 426783006 "),),
    )
    with pytest.raises(InputError, match=r"does not validate at entry\.\d\.resource\..*code"):
        diagnostic_report(bad)
