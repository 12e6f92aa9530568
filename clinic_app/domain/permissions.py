"""Who may do what: the role x action matrix, enforced in the services layer.

The GUI hides what a role cannot do, but the services refuse it regardless (AccessDenied), so
a script or a modified client gets no further. Least privilege: administrators manage the
system and read the audit trail but not clinical content; data scientists see cases only as
differentially private aggregates and as training data for the model.
"""

from __future__ import annotations

from enum import StrEnum

from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.records import Role


class Permission(StrEnum):
    CASE_CREATE = "case.create"
    CASE_READ = "case.read"
    CASE_UPDATE = "case.update"  # import inputs, edit notes and vitals
    CASE_DELETE = "case.delete"
    CASE_ANALYSE = "case.analyse"
    CASE_DECIDE = "case.decide"  # accept / override / reject suggestions
    CASE_SIGN = "case.sign"
    CASE_AMEND = "case.amend"
    REPORT_EXPORT = "report.export"
    AUDIT_VIEW = "audit.view"
    AUDIT_EXPORT = "audit.export"
    USERS_MANAGE = "users.manage"
    SETTINGS_CHANGE = "settings.change"
    STATS_RELEASE = "stats.release"
    PRIVACY_BUDGET_SET = "privacy.budget_set"
    MODEL_TRAIN = "model.train"
    DATABASE_ADMIN = "database.admin"  # upgrade, backup, encryption


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CLINICIAN: frozenset(
        {
            P.CASE_CREATE,
            P.CASE_READ,
            P.CASE_UPDATE,
            P.CASE_ANALYSE,
            P.CASE_DECIDE,
            P.CASE_SIGN,
            P.CASE_AMEND,
            P.REPORT_EXPORT,
        }
    ),
    Role.REVIEWER: frozenset(
        {
            P.CASE_READ,
            P.CASE_ANALYSE,
            P.CASE_DECIDE,
            P.CASE_SIGN,
            P.CASE_AMEND,
            P.REPORT_EXPORT,
            P.AUDIT_VIEW,
        }
    ),
    Role.ADMIN: frozenset(
        {
            P.CASE_DELETE,
            P.AUDIT_VIEW,
            P.AUDIT_EXPORT,
            P.USERS_MANAGE,
            P.SETTINGS_CHANGE,
            P.STATS_RELEASE,
            P.PRIVACY_BUDGET_SET,
            P.DATABASE_ADMIN,
        }
    ),
    Role.DATA_SCIENTIST: frozenset({P.STATS_RELEASE, P.MODEL_TRAIN}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def require(role: Role, permission: Permission, *, username: str = "this user") -> None:
    """Raise AccessDenied unless ``role`` holds ``permission``."""
    if not allowed(role, permission):
        raise AccessDenied(
            f"{username} ({role.value.replace('_', ' ')}) may not {_VERBS[permission]}.",
            hint="Ask an administrator if your role should allow it.",
        )


_VERBS: dict[Permission, str] = {
    P.CASE_CREATE: "create cases",
    P.CASE_READ: "open cases",
    P.CASE_UPDATE: "change case data",
    P.CASE_DELETE: "delete cases",
    P.CASE_ANALYSE: "run analyses",
    P.CASE_DECIDE: "decide on suggestions",
    P.CASE_SIGN: "sign cases",
    P.CASE_AMEND: "amend signed cases",
    P.REPORT_EXPORT: "export reports",
    P.AUDIT_VIEW: "view the audit trail",
    P.AUDIT_EXPORT: "export the audit trail",
    P.USERS_MANAGE: "manage user accounts",
    P.SETTINGS_CHANGE: "change settings",
    P.STATS_RELEASE: "release statistics",
    P.PRIVACY_BUDGET_SET: "set privacy budgets",
    P.MODEL_TRAIN: "train models",
    P.DATABASE_ADMIN: "administer the database",
}
