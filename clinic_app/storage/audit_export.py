"""Audit events out of the database as FHIR R4 AuditEvent resources and DICOM audit messages.

Both formats carry the same DICOM PS3.15 A.5 / IHE ATNA content: event id and type (DCM codes,
mapped from the app's event types in :data:`DICOM_EVENT_IDS`), action C/R/U/D/E, UTC time,
outcome 0/4/8/12, the active participant (user, role, workstation) and the participant objects
(pseudonymous patient and case ids only: the trail never holds a name or record number).

FHIR: the ``fhir.resources`` package's ``R4B`` models (FHIR 4.3.0; its AuditEvent is R4's,
4.0.1, element for element). The package's top-level models are R5, whose AuditEvent differs,
so R4B is the right choice for an R4 consumer. Every Bundle is validated by those models
before it is written.

DICOM: PS3.15 A.5.1 element and attribute names. One ``AuditMessage`` describes one event, so
an export of many events wraps them in an ``AuditMessages`` root element (a container of this
app, not of the standard); each child is a complete message.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.storage.audit import canonical_json, format_time
from clinic_app.storage.orm import AuditEvent

DCM = "http://dicom.nema.org/resources/ontology/DCM"
FHIR_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
FHIR_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
FHIR_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
FHIR_NETWORK_TYPE_MACHINE = "1"  # http://hl7.org/fhir/network-type: machine name
APP_EVENT_TYPE_SYSTEM = "urn:clinicfusion:audit-event-type"
APP_ROLE_SYSTEM = "urn:clinicfusion:role"
USER_SYSTEM = "urn:clinicfusion:user"
PATIENT_PSEUDONYM_SYSTEM = "urn:clinicfusion:patient-pseudonym"
CASE_UID_SYSTEM = "urn:clinicfusion:case-uid"


@dataclass(frozen=True)
class Coded:
    """A DICOM/DCM coded value: code and its meaning."""

    code: str
    meaning: str


APPLICATION_ACTIVITY = Coded("110100", "Application Activity")
AUDIT_LOG_USED = Coded("110101", "Audit Log Used")
EXPORT = Coded("110106", "Export")
IMPORT = Coded("110107", "Import")
PATIENT_RECORD = Coded("110110", "Patient Record")
QUERY = Coded("110112", "Query")
SECURITY_ALERT = Coded("110113", "Security Alert")
USER_AUTHENTICATION = Coded("110114", "User Authentication")

#: App event type (exact name first, then the part before the first dot) -> DICOM EventID and,
#: where DCM has one, EventTypeCode. Anything unknown is Application Activity.
DICOM_EVENT_IDS: dict[str, tuple[Coded, Coded | None]] = {
    "user.login": (USER_AUTHENTICATION, Coded("110122", "Login")),
    "user.logout": (USER_AUTHENTICATION, Coded("110123", "Logout")),
    "user": (SECURITY_ALERT, Coded("110137", "User Security Attributes Changed")),
    "users": (SECURITY_ALERT, Coded("110137", "User Security Attributes Changed")),
    "app.start": (APPLICATION_ACTIVITY, Coded("110120", "Application Start")),
    "app.stop": (APPLICATION_ACTIVITY, Coded("110121", "Application Stop")),
    "app": (APPLICATION_ACTIVITY, None),
    "audit.view": (AUDIT_LOG_USED, None),
    "audit.verify": (AUDIT_LOG_USED, None),
    "audit.export": (EXPORT, None),
    "audit": (AUDIT_LOG_USED, None),
    "case.list": (QUERY, None),
    "case.import": (IMPORT, None),
    "case": (PATIENT_RECORD, None),
    "patient": (PATIENT_RECORD, None),
    "report.export": (EXPORT, None),
    "report": (EXPORT, None),
    "stats.release": (EXPORT, None),
    "privacy.release": (EXPORT, None),
    "privacy.budget_set": (SECURITY_ALERT, Coded("110129", "Security Configuration")),
    "privacy": (SECURITY_ALERT, Coded("110129", "Security Configuration")),
    "settings": (SECURITY_ALERT, Coded("110131", "Software Configuration")),
    "db": (APPLICATION_ACTIVITY, None),
    "model": (APPLICATION_ACTIVITY, None),
}


def dicom_event_codes(event_type: str) -> tuple[Coded, Coded | None]:
    """The DICOM EventID (and EventTypeCode, if any) for one of the app's event types."""
    if event_type in DICOM_EVENT_IDS:
        return DICOM_EVENT_IDS[event_type]
    return DICOM_EVENT_IDS.get(event_type.split(".", 1)[0], (APPLICATION_ACTIVITY, None))


# -- DICOM PS3.15 A.5 XML ---------------------------------------------------------------------
def _coded(parent: ET.Element, tag: str, value: Coded, system: str = "DCM") -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": value.code, "codeSystemName": system, "originalText": value.meaning},
    )


def dicom_audit_message(event: AuditEvent, *, source_id: str) -> ET.Element:
    """One event as a PS3.15 A.5.1 ``AuditMessage`` element."""
    event_id, event_type_code = dicom_event_codes(event.event_type)
    message = ET.Element("AuditMessage")
    identification = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": AuditAction(event.action).value,
            "EventDateTime": format_time(event.occurred_at),
            "EventOutcomeIndicator": str(int(event.outcome)),
        },
    )
    _coded(identification, "EventID", event_id)
    if event_type_code is not None:
        _coded(identification, "EventTypeCode", event_type_code)
    _coded(
        identification,
        "EventTypeCode",
        Coded(event.event_type, event.event_type),
        system=APP_EVENT_TYPE_SYSTEM,
    )
    refused = event.details.get("refused") or event.details.get("reason")
    if int(event.outcome) != AuditOutcome.SUCCESS and refused:
        ET.SubElement(identification, "EventOutcomeDescription").text = str(refused)

    person: dict[str, str] = {
        "UserID": event.username or "unknown",
        "UserIsRequestor": "true",
        "NetworkAccessPointID": event.workstation,
        "NetworkAccessPointTypeCode": "1",  # machine name
    }
    if event.user_id is not None:
        person["AlternativeUserID"] = str(event.user_id)
    participant = ET.SubElement(message, "ActiveParticipant", person)
    if event.role:
        _coded(participant, "RoleIDCode", Coded(event.role, event.role), system=APP_ROLE_SYSTEM)
    application = ET.SubElement(
        message,
        "ActiveParticipant",
        {
            "UserID": source_id,
            "UserIsRequestor": "false",
            "NetworkAccessPointID": event.workstation,
            "NetworkAccessPointTypeCode": "1",
        },
    )
    _coded(application, "RoleIDCode", Coded("110150", "Application"))

    source = ET.SubElement(
        message, "AuditSourceIdentification", {"AuditSourceID": f"{source_id}@{event.workstation}"}
    )
    ET.SubElement(
        source,
        "AuditSourceTypeCode",
        {"csd-code": "1", "codeSystemName": "RFC-3881", "originalText": "End-user interface"},
    )

    if event.patient_pseudonym:
        patient = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": event.patient_pseudonym,
                "ParticipantObjectTypeCode": "1",  # person
                "ParticipantObjectTypeCodeRole": "1",  # patient
            },
        )
        _coded(patient, "ParticipantObjectIDTypeCode", Coded("2", "Patient Number"), "RFC-3881")
    if event.case_uid:
        case = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": event.case_uid,
                "ParticipantObjectTypeCode": "2",  # system object
                "ParticipantObjectTypeCodeRole": "3",  # report: the case record
            },
        )
        _coded(case, "ParticipantObjectIDTypeCode", Coded("9", "Report Number"), "RFC-3881")
    return message


def dicom_audit_xml(events: Iterable[AuditEvent], *, source_id: str) -> bytes:
    """Events as UTF-8 XML: an ``AuditMessages`` root holding one ``AuditMessage`` each."""
    root = ET.Element("AuditMessages", {"source": source_id})
    count = 0
    for event in events:
        root.append(dicom_audit_message(event, source_id=source_id))
        count += 1
    root.set("count", str(count))
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"


# -- FHIR R4 AuditEvent -----------------------------------------------------------------------
def fhir_audit_event(event: AuditEvent, *, source_id: str) -> dict[str, Any]:
    """One event as a FHIR R4 AuditEvent resource (plain JSON values, not yet validated)."""
    event_id, event_type_code = dicom_event_codes(event.event_type)
    subtype = [{"system": APP_EVENT_TYPE_SYSTEM, "code": event.event_type}]
    if event_type_code is not None:
        subtype.insert(
            0, {"system": DCM, "code": event_type_code.code, "display": event_type_code.meaning}
        )
    agent: dict[str, Any] = {
        "who": {
            "identifier": {"system": USER_SYSTEM, "value": event.username or "unknown"},
            "display": event.username or "unknown",
        },
        "requestor": True,
        "network": {"address": event.workstation, "type": FHIR_NETWORK_TYPE_MACHINE},
    }
    if event.user_id is not None:
        agent["altId"] = str(event.user_id)
    if event.role:
        agent["role"] = [{"coding": [{"system": APP_ROLE_SYSTEM, "code": event.role}]}]
    entities: list[dict[str, Any]] = []
    if event.patient_pseudonym:
        entities.append(
            {
                "what": {
                    "identifier": {
                        "system": PATIENT_PSEUDONYM_SYSTEM,
                        "value": event.patient_pseudonym,
                    }
                },
                "type": {"system": FHIR_ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": FHIR_OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    if event.case_uid:
        entities.append(
            {
                "what": {"identifier": {"system": CASE_UID_SYSTEM, "value": event.case_uid}},
                "type": {"system": FHIR_ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": FHIR_OBJECT_ROLE, "code": "3", "display": "Report"},
            }
        )
    # The record itself, so an importer can re-check the chain: sequence, hashes, details.
    entities.append(
        {
            "what": {"display": "ClinicFusion audit record"},
            "type": {"system": FHIR_ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": FHIR_OBJECT_ROLE, "code": "13", "display": "Security Resource"},
            "detail": [
                {"type": "sequence", "valueString": str(event.sequence)},
                {"type": "prev_hash", "valueString": event.prev_hash},
                {"type": "hash", "valueString": event.hash},
                {"type": "details", "valueString": canonical_json(event.details).decode()},
            ],
        }
    )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event.event_uid,
        "type": {"system": DCM, "code": event_id.code, "display": event_id.meaning},
        "subtype": subtype,
        "action": AuditAction(event.action).value,
        "recorded": format_time(event.occurred_at),
        "outcome": str(int(event.outcome)),
        "agent": [agent],
        "source": {
            "site": event.workstation,
            "observer": {"display": source_id},
            "type": [{"system": FHIR_SOURCE_TYPE, "code": "1", "display": "User Device"}],
        },
        "entity": entities,
    }
    refused = event.details.get("refused") or event.details.get("reason")
    if int(event.outcome) != AuditOutcome.SUCCESS and refused:
        resource["outcomeDesc"] = str(refused)
    return resource


def fhir_audit_bundle(
    events: Sequence[AuditEvent], *, source_id: str, now: datetime | None = None
) -> str:
    """Events as a FHIR R4 Bundle (type collection) in JSON, validated by the R4B models.

    Raises ``ValueError`` (pydantic's ValidationError) if a resource does not conform, which
    would be a bug here, never bad user input.
    """
    from fhir.resources.R4B.bundle import Bundle  # ~0.3 s: only when exporting

    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": format_time(now or datetime.now(UTC)),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{event.event_uid}",
                "resource": fhir_audit_event(event, source_id=source_id),
            }
            for event in events
        ],
    }
    if not events:
        del document["entry"]  # FHIR forbids empty arrays
    bundle = Bundle.model_validate(document)
    return json.dumps(json.loads(bundle.model_dump_json()), indent=2, ensure_ascii=False) + "\n"
