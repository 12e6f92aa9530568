"""Plain, dependency-free domain objects shared by every layer (stdlib + numpy only)."""

from __future__ import annotations

from clinic_app.domain.errors import (
    AccessDenied,
    AuditIntegrityError,
    ClinicError,
    ConfigError,
    InputError,
    ModelError,
    NotAvailable,
    PrivacyBudgetExceeded,
    ReadOnlyCase,
    StorageError,
)
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT
from clinic_app.domain.records import (
    AuditAction,
    AuditOutcome,
    CaseStatus,
    DecisionAction,
    Modality,
    ReportKind,
    Role,
)

__all__ = [
    "INTENDED_USE",
    "INTENDED_USE_SHORT",
    "AccessDenied",
    "AuditAction",
    "AuditIntegrityError",
    "AuditOutcome",
    "CaseStatus",
    "ClinicError",
    "ConfigError",
    "DecisionAction",
    "InputError",
    "Modality",
    "ModelError",
    "NotAvailable",
    "PrivacyBudgetExceeded",
    "ReadOnlyCase",
    "ReportKind",
    "Role",
    "StorageError",
]
