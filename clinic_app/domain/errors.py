"""The one exception family of ClinicFusion.

Every error a person can meet is a :class:`ClinicError` whose message is a full sentence
saying what went wrong and what to do about it. The CLI prints the message and exits with
``exit_code``; the GUI shows it in a dialog. Anything that is *not* a ClinicError is a bug:
it is logged with its traceback and the user is pointed at the log file.
"""

from __future__ import annotations


class ClinicError(Exception):
    """Base class: a problem a clinician or administrator can act on.

    ``hint`` is an optional second sentence with the next step ("Run `clinic-app db upgrade`").
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"


class ConfigError(ClinicError):
    """Settings, paths or the environment are wrong (unwritable data dir, bad settings file)."""

    exit_code = 78  # EX_CONFIG


class InputError(ClinicError):
    """A file or value given by the user cannot be used (corrupt, wrong format, too large)."""

    exit_code = 65  # EX_DATAERR


class StorageError(ClinicError):
    """The case database cannot be read or written (locked, wrong schema, wrong key)."""

    exit_code = 74  # EX_IOERR


class ModelError(ClinicError):
    """The model bundle is missing, tampered with, or cannot run on this machine."""

    exit_code = 69  # EX_UNAVAILABLE


class AccessDenied(ClinicError):
    """The signed-in user's role does not allow the action, or the login failed."""

    exit_code = 77  # EX_NOPERM


class AuditIntegrityError(ClinicError):
    """The audit trail's hash chain does not verify: events were altered or removed."""

    exit_code = 1


class PrivacyBudgetExceeded(ClinicError):
    """A statistics release would spend more differential-privacy budget than is left."""

    exit_code = 1


class NotAvailable(ClinicError):
    """A command or feature exists in the interface but not in this version."""

    exit_code = 2


class ReadOnlyCase(ClinicError):
    """The case is signed (or superseded by an amendment) and can no longer change."""

    exit_code = 1


class Cancelled(ClinicError):
    """A long job (an analysis) was cancelled by the user; nothing was stored."""

    exit_code = 1

    def __init__(
        self,
        message: str = "The analysis was cancelled; nothing was stored.",
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
