"""Vocabularies of the case record: statuses, roles, modalities, decisions, audit codes.

Plain ``StrEnum``s so they store as readable text and compare equal to their values.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CaseStatus(StrEnum):
    NEW = "new"
    ANALYSED = "analysed"
    IN_REVIEW = "in_review"
    SIGNED = "signed"
    AMENDED = "amended"  # a signed case superseded by a newer version

    @property
    def read_only(self) -> bool:
        """Signed and amended cases never change; an amendment is a new version."""
        return self in (CaseStatus.SIGNED, CaseStatus.AMENDED)


class Role(StrEnum):
    CLINICIAN = "clinician"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    DATA_SCIENTIST = "data_scientist"


class Modality(StrEnum):
    PATHOLOGY = "pathology"
    ECG = "ecg"
    NOTE = "note"


class DecisionAction(StrEnum):
    ACCEPT = "accept"
    OVERRIDE = "override"
    REJECT = "reject"

    @property
    def needs_reason(self) -> bool:
        return self is not DecisionAction.ACCEPT


class ReportKind(StrEnum):
    PDF = "pdf"
    DICOM_PDF = "dicom_pdf"
    FHIR = "fhir"


class AuditAction(StrEnum):
    """DICOM PS3.15 A.5 / IHE ATNA EventActionCode."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class AuditOutcome(IntEnum):
    """DICOM PS3.15 A.5 / IHE ATNA EventOutcomeIndicator."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12
