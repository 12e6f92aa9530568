"""The report as FHIR R4 JSON: a Bundle (type "collection") of a DiagnosticReport, one
Observation per suggestion and the model as a Device.

Why a collection Bundle and not a DiagnosticReport with contained Observations: each
suggestion is a finding in its own right (a SNOMED-coded probability a receiver may index or
query by code), and contained resources are meant for content that cannot stand alone. A
collection is a plain set of resources, not an instruction to a server (a transaction would be).

Models: ``fhir.resources`` R4B (FHIR 4.3.0, whose DiagnosticReport and Observation match R4
4.0.1), as in ``storage.audit_export``. R4 does not allow a Device as DiagnosticReport
performer, so the model is the ``device`` of every Observation (and named in each method),
and the signing clinician is the report's performer and results interpreter. The patient is a
logical reference by pseudonym only; no Patient resource is sent. R4 DiagnosticReport has no
note, so the research-use statement is in its narrative and in every Observation's note.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from clinic_app.domain.errors import InputError
from clinic_app.reporting.data import ReportData, ReportSuggestion

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
PATIENT_PSEUDONYM_SYSTEM = "urn:clinicfusion:patient-pseudonym"
REPORT_SYSTEM = "urn:clinicfusion:report"
MODEL_SYSTEM = "urn:clinicfusion:model"
BUNDLE_SHA_SYSTEM = "urn:clinicfusion:model-bundle-sha256"
COMPONENT_SYSTEM = "urn:clinicfusion:observation-component"
TAG_SYSTEM = "urn:clinicfusion:tag"
STUDY_REPORT = {"system": LOINC, "code": "47045-0", "display": "Study report"}
_NAMESPACE = uuid.UUID("7a1c5d8e-2f0b-4c1e-9a57-3c1f0e2b6d41")


def _instant(value: datetime) -> str:
    """An ISO instant with a zone (FHIR requires one); naive values are taken as UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _uuid(data: ReportData, *parts: object) -> str:
    name = "/".join(str(p) for p in (data.case_uid, data.case_version, *parts))
    return str(uuid.uuid5(_NAMESPACE, name))


def _percent(value: float) -> float:
    return round(value * 100.0, 2)


def _coding(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _meta(data: ReportData) -> dict[str, Any] | None:
    if not data.is_composite_demo:
        return None
    return {
        "tag": [_coding(TAG_SYSTEM, "composite-demo", "Composite demo case")],
        "security": [_coding(ACT_REASON, "HTEST", "test health data")],
    }


def _observation(
    data: ReportData, item: ReportSuggestion, subject: dict[str, Any], device_url: str | None
) -> dict[str, Any]:
    value = item.calibrated_probability
    calibrated = value is not None
    shown = value if value is not None else item.probability
    notes = [data.intended_use]
    if item.abstained:
        notes.append(
            "Abstained: the model's prediction set was unsure about this label; it makes no "
            "call and a clinician must review it."
        )
    if item.critical:
        notes.append("Flagged critical in the model bundle (triage risk).")
    if not calibrated:
        notes.append("No calibrated probability: the value is the raw model output.")
    if item.decision:
        notes.append(f"Clinician decision: {item.decision}.")
    if data.composite_notice:
        notes.append(data.composite_notice)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uuid(data, "observation", item.rank, item.code_system, item.code),
        "status": "final" if data.sign_off is not None else "preliminary",
        "category": [{"text": "Decision-support suggestion (model output)"}],
        "code": {
            "coding": [_coding(item.code_system, item.code, item.display)],
            "text": item.display,
        },
        "subject": subject,
        "effectiveDateTime": _instant(data.analysed_at or data.generated_at),
        "issued": _instant(data.generated_at),
        "valueQuantity": {
            "value": _percent(shown),
            "unit": "%",
            "system": UCUM,
            "code": "%",
        },
        "component": [
            {
                "code": {
                    "coding": [
                        _coding(COMPONENT_SYSTEM, "raw-probability", "Uncalibrated probability")
                    ]
                },
                "valueQuantity": {
                    "value": _percent(item.probability),
                    "unit": "%",
                    "system": UCUM,
                    "code": "%",
                },
            },
            {
                "code": {"coding": [_coding(COMPONENT_SYSTEM, "rank", "Rank among suggestions")]},
                "valueInteger": item.rank,
            },
        ],
        "note": [{"text": text} for text in notes],
    }
    if item.abstained:
        observation["interpretation"] = [
            {
                "coding": [_coding(INTERPRETATION, "IND", "Indeterminate")],
                "text": "Abstained – review",
            }
        ]
    model = data.model
    if model is not None:
        label = f"{model.name} {model.version}"
        observation["method"] = {
            "coding": [_coding(MODEL_SYSTEM, f"{model.name}@{model.version}", label)],
            "text": f"{label} (calibrated probability)" if calibrated else label,
        }
    if device_url is not None:
        observation["device"] = {"reference": device_url, "display": observation["method"]["text"]}
    meta = _meta(data)
    if meta is not None:
        observation["meta"] = meta
    return observation


def _device(data: ReportData) -> dict[str, Any] | None:
    model = data.model
    if model is None:
        return None
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": _uuid(data, "device", model.name, model.version, model.bundle_sha256),
        "identifier": [{"system": BUNDLE_SHA_SYSTEM, "value": model.bundle_sha256}],
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "version": [{"value": model.version}],
        "type": {"text": "Machine-learning decision-support model (research use)"},
        "note": [{"text": model.intended_use}, {"text": f"Ran on {model.device}."}],
    }
    meta = _meta(data)
    if meta is not None:
        device["meta"] = meta
    return device


def _conclusion_codes(data: ReportData) -> list[dict[str, Any]]:
    """Codes the clinician stood behind: accepted suggestions and override diagnoses."""
    by_display = {s.display: s for s in data.suggestions}
    codes: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for decision in data.decisions:
        if decision.action == "accept" and decision.suggestion_display in by_display:
            item = by_display[decision.suggestion_display]
            key, coding = (
                (item.code_system, item.code),
                _coding(item.code_system, item.code, item.display),
            )
        elif decision.action == "override" and decision.override_code:
            system = decision.override_code_system or SNOMED
            key = (system, decision.override_code)
            coding = _coding(system, decision.override_code, decision.override_display)
        else:
            continue
        if key not in seen:
            seen.add(key)
            codes.append({"coding": [coding], "text": coding.get("display", coding["code"])})
    return codes


def _narrative(data: ReportData) -> dict[str, Any]:
    parts = [
        f"<p><b>ClinicFusion explanation report</b>, case {html.escape(data.case_uid)} "
        f"version {data.case_version}.</p>",
        f"<p>{html.escape(data.intended_use)}</p>",
    ]
    if data.composite_notice:
        parts.append(f"<p>{html.escape(data.composite_notice)}</p>")
    if data.sign_off is None:
        parts.append("<p>Not signed: preliminary report.</p>")
    div = '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(parts) + "</div>"
    return {"status": "generated", "div": div}


def build_bundle(data: ReportData, *, pdf: bytes | None = None) -> dict[str, Any]:
    """The Bundle as plain JSON-ready dicts (not yet validated)."""
    subject = {
        "type": "Patient",
        "identifier": {"system": PATIENT_PSEUDONYM_SYSTEM, "value": data.patient_pseudonym},
        "display": f"Patient pseudonym {data.patient_pseudonym}",
    }
    device = _device(data)
    device_url = f"urn:uuid:{device['id']}" if device is not None else None
    observations = [_observation(data, item, subject, device_url) for item in data.suggestions]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _uuid(data, "report"),
        "text": _narrative(data),
        "identifier": [{"system": REPORT_SYSTEM, "value": f"{data.case_uid}/v{data.case_version}"}],
        "status": "final" if data.sign_off is not None else "preliminary",
        "category": [{"coding": [_coding(DIAGNOSTIC_SERVICE, "OTH", "Other")]}],
        "code": {"coding": [STUDY_REPORT], "text": "ClinicFusion explanation report"},
        "subject": subject,
        "effectiveDateTime": _instant(data.analysed_at or data.created_at),
        "issued": _instant(data.generated_at),
        "result": [
            {"reference": f"urn:uuid:{o['id']}", "display": o["code"]["text"]} for o in observations
        ],
    }
    if data.sign_off is not None:
        signer = {"type": "Practitioner", "display": data.sign_off.user}
        report["performer"] = [signer]
        report["resultsInterpreter"] = [signer]
        report["conclusion"] = data.sign_off.final_impression
    elif data.institution.strip():
        report["performer"] = [{"type": "Organization", "display": data.institution.strip()}]
    codes = _conclusion_codes(data)
    if codes:
        report["conclusionCode"] = codes
    if pdf is not None:
        report["presentedForm"] = [
            {
                "contentType": "application/pdf",
                "data": base64.b64encode(pdf).decode("ascii"),
                "size": len(pdf),
                "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode("ascii"),
                "title": f"ClinicFusion explanation report, case {data.case_uid} "
                f"v{data.case_version}",
                "creation": _instant(data.generated_at),
            }
        ]
    meta = _meta(data)
    if meta is not None:
        report["meta"] = meta
    if not report["result"]:
        del report["result"]
    resources = [report, *observations, *([device] if device is not None else [])]
    return {
        "resourceType": "Bundle",
        "id": _uuid(data, "bundle"),
        "identifier": {"system": REPORT_SYSTEM, "value": _uuid(data, "bundle")},
        "type": "collection",
        "timestamp": _instant(data.generated_at),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def _prune(value: Any) -> Any:
    """Drop empty strings, lists and objects: FHIR forbids them (an empty display is absent)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ("", None, [], {})}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v not in ("", None, [], {})]
    return value


def diagnostic_report(data: ReportData, *, pdf: bytes | None = None) -> dict[str, Any]:
    """The report as a FHIR R4 Bundle dict, validated by the fhir.resources R4B models."""
    from fhir.resources.R4B.bundle import Bundle  # ~0.3 s: only when exporting
    from pydantic import ValidationError

    document = _prune(build_bundle(data, pdf=pdf))
    try:
        bundle = Bundle.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "Bundle"
        raise InputError(
            f"The FHIR report does not validate at {where}: {first.get('msg', error)}"
        ) from error
    result: dict[str, Any] = json.loads(bundle.model_dump_json())
    return result
