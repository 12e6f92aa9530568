"""Administration dialogs: the audit trail, private statistics, users and roles.

Each takes the case database and the signed-in Actor; the services check permissions, and a
refusal is shown through :func:`clinic_app.gui.dialogs.show_error`.
"""

from __future__ import annotations

from clinic_app.gui.admin.audit import AuditTableModel, AuditViewerDialog
from clinic_app.gui.admin.privacy import ErrorBarChart, PrivacyStatsDialog, noise_half_width
from clinic_app.gui.admin.users import NewUserDialog, PasswordResetDialog, UsersDialog

__all__ = [
    "AuditTableModel",
    "AuditViewerDialog",
    "ErrorBarChart",
    "NewUserDialog",
    "PasswordResetDialog",
    "PrivacyStatsDialog",
    "UsersDialog",
    "noise_half_width",
]
