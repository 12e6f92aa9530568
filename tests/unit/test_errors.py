from __future__ import annotations

import pytest

from clinic_app.domain import errors


def test_every_error_is_a_clinic_error_with_its_own_exit_code() -> None:
    family = [
        errors.ConfigError,
        errors.InputError,
        errors.StorageError,
        errors.ModelError,
        errors.AccessDenied,
        errors.NotAvailable,
    ]
    for kind in family:
        assert issubclass(kind, errors.ClinicError)
    assert len({kind.exit_code for kind in family}) == len(family)
    assert errors.NotAvailable.exit_code == 2


def test_message_and_hint_read_as_two_sentences() -> None:
    exc = errors.InputError("The file scan.dcm is truncated.", hint="Export it again.")
    assert str(exc) == "The file scan.dcm is truncated. Export it again."
    assert exc.message == "The file scan.dcm is truncated."
    with pytest.raises(errors.ClinicError, match="truncated"):
        raise exc
