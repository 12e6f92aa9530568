"""`clinic-app doctor`: what this installation sees, and whether anything is broken.

This is what a clinic's IT sends when asking for help, so every line names a version, path or
device, and every problem says how to fix it. Checks never change anything on disk.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from clinic_app._version import __version__
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError, ConfigError
from clinic_app.services.database import open_database
from clinic_app.services.model_bundles import choose_bundle, verify_model_bundle
from clinic_app.storage.encryption import is_plain_sqlite
from clinic_app.storage.inspection import database_status
from clinic_app.storage.migrate import current_revision

Status = Literal["ok", "warn", "fail"]
QT_PROBE_TIMEOUT_S = 60.0
#: Hidden first argument of `clinic-app` that starts Qt and prints what it sees (one JSON line).
QT_PROBE_COMMAND = "_qt-probe"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    facts: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    """All checks, in the order they were run."""

    checks: list[Check]
    created_utc: str

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    def to_dict(self) -> dict[str, object]:
        return {
            "clinicfusion": __version__,
            "created_utc": self.created_utc,
            "ok": self.ok,
            "checks": [asdict(check) for check in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_text(self) -> str:
        label = {"ok": " OK ", "warn": "WARN", "fail": "FAIL"}
        width = max(len(check.name) for check in self.checks)
        lines = [f"ClinicFusion {__version__} doctor, {self.created_utc}"]
        for check in self.checks:
            lines.append(f"[{label[check.status]}] {check.name:<{width}}  {check.detail}")
            if check.fix:
                lines.append(f"       {'':<{width}}  fix: {check.fix}")
        problems = len(self.failures)
        warnings = sum(check.status == "warn" for check in self.checks)
        if problems:
            lines.append(f"Result: {problems} problem(s) found; ClinicFusion may not work here.")
        else:
            lines.append(f"Result: no problem found ({warnings} warning(s)).")
        return "\n".join(lines)


def _check_app() -> Check:
    location = str(Path(__file__).resolve().parents[1])
    frozen = bool(getattr(sys, "frozen", False))
    return Check(
        "ClinicFusion",
        "ok",
        f"{__version__} ({'frozen bundle' if frozen else 'installed at ' + location})",
        facts={"version": __version__, "location": location, "frozen": frozen},
    )


def _check_python() -> Check:
    version = platform.python_version()
    detail = (
        f"{version} ({platform.python_implementation()}, {platform.system()} "
        f"{platform.release()}, {platform.machine()}) {sys.executable}"
    )
    facts: dict[str, object] = {
        "version": version,
        "executable": sys.executable,
        "platform": platform.platform(),
    }
    return Check("Python", "ok", detail, facts=facts)


def _check_torch() -> Check:
    try:
        from model.device import describe_compute

        info = describe_compute()
    except ImportError as exc:
        return Check(
            "PyTorch",
            "fail",
            f"not importable ({exc})",
            "Reinstall ClinicFusion; see the README's install and GPU notes.",
        )
    cuda = ", ".join(info.cuda_devices) if info.cuda_available else "not available"
    detail = (
        f"{info.torch_version}, {info.build} build; CUDA: {cuda}; "
        f"MPS: {'available' if info.mps_available else 'not available'}; "
        f"analysis runs on {info.best_device} ({info.threads} CPU threads)"
    )
    facts = asdict(info) | {"device": info.best_device}
    if info.build.startswith("CUDA") and not info.cuda_available:
        return Check(
            "PyTorch",
            "warn",
            detail,
            "This torch is a CUDA build but sees no GPU: check the NVIDIA driver "
            "(`nvidia-smi`). Analysis falls back to the CPU.",
            facts,
        )
    if info.build == "CPU" and shutil.which("nvidia-smi"):
        return Check(
            "PyTorch",
            "warn",
            detail,
            "An NVIDIA driver is installed but torch is a CPU build: install the CUDA build as "
            "the README's GPU notes say.",
            facts,
        )
    return Check("PyTorch", "ok", detail, facts=facts)


def qt_probe_command() -> list[str]:
    """The command that starts Qt in a child process (a broken Qt plugin cannot kill doctor)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, QT_PROBE_COMMAND]
    return [sys.executable, "-m", "clinic_app", QT_PROBE_COMMAND]


def _check_qt(timeout_s: float) -> Check:
    try:
        result = subprocess.run(
            qt_probe_command(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check("Qt", "fail", f"Qt did not start within {timeout_s:.0f} s.", _qt_fix())
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = " / ".join(lines[-3:]) if lines else f"exit status {result.returncode}"
        return Check("Qt", "fail", f"the GUI cannot start: {reason}", _qt_fix())
    try:
        facts = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return Check("Qt", "fail", f"unexpected Qt probe output: {result.stdout[-200:]!r}")
    detail = (
        f"PySide6 {facts.get('pyside6')}, Qt {facts.get('qt')}, platform '{facts.get('platform')}'"
    )
    return Check("Qt", "ok", detail, facts=facts)


def _qt_fix() -> str:
    headless = (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and not os.environ.get("QT_QPA_PLATFORM")
    )
    if headless:
        return (
            "No display: DISPLAY and WAYLAND_DISPLAY are unset. Start ClinicFusion from a "
            "desktop session, or set QT_QPA_PLATFORM=offscreen for headless use."
        )
    return (
        "On Linux install Qt's system libraries (README, 'System packages'), or run headless "
        "with QT_QPA_PLATFORM=offscreen."
    )


def _check_data_dir(settings: Settings) -> Check:
    folder = settings.data_dir
    facts: dict[str, object] = {
        "path": str(folder),
        "log_file": str(settings.log_file),
        "keys_dir": str(settings.keys_dir),
        "portable": settings.portable,
    }
    mode = "; portable mode (data and keys beside the executable)" if settings.portable else ""
    if not folder.exists():
        ancestor = next((p for p in folder.parents if p.exists()), None)
        if ancestor is not None and ancestor.is_dir() and os.access(ancestor, os.W_OK):
            detail = f"{folder} (created on first launch){mode}"
            return Check("Data folder", "ok", detail, facts=facts)
        why = f"{ancestor} is not a writable folder" if ancestor else "no parent folder exists"
        return Check(
            "Data folder",
            "fail",
            f"{folder} does not exist and cannot be created ({why}).",
            "Choose another folder with --data-dir.",
            facts,
        )
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return Check(
            "Data folder",
            "fail",
            f"{folder} is not a writable folder.",
            "Fix its permissions or choose another folder with --data-dir.",
            facts,
        )
    return Check("Data folder", "ok", f"{folder}; log file {settings.log_file}{mode}", facts=facts)


def _check_encrypted_database(settings: Settings, path: Path) -> Check:
    """An encrypted file: open it read-only with a key found without asking (env, keyring)."""
    facts: dict[str, object] = {"url": f"sqlite:///{path}", "encrypted": True, "exists": True}
    detail = f"sqlite:///{path} (encrypted with SQLCipher)"
    try:
        database = open_database(settings, migrate=False)
    except ConfigError as exc:
        return Check(
            "Database",
            "warn" if settings.encryption == "sqlcipher" else "fail",
            f"{detail}; no key available here, so the schema was not checked.",
            exc.hint or "Set CLINICFUSION_DB_PASSPHRASE to let doctor open it.",
            facts,
        )
    except ClinicError as exc:
        return Check("Database", "fail", exc.message, exc.hint, facts)
    try:
        revision = current_revision(database)
    finally:
        database.dispose()
    facts["schema_revision"] = revision
    return Check("Database", "ok", f"{detail}; schema revision {revision or 'none'}", facts=facts)


def _check_database(settings: Settings) -> Check:
    path = settings.database_path
    if path is not None and path.is_file() and not is_plain_sqlite(path):
        return _check_encrypted_database(settings, path)
    try:
        status = database_status(settings.database_url)
    except ClinicError as exc:
        return Check("Database", "fail", exc.message, exc.hint)
    facts = {
        "url": status.url,
        "backend": status.backend,
        "exists": status.exists,
        "schema_revision": status.schema_revision,
    }
    if not status.exists:
        return Check("Database", "ok", f"{status.url} (not created yet)", facts=facts)
    revision = status.schema_revision or "none"
    size = f", {status.size_bytes / 2**20:.1f} MiB" if status.size_bytes is not None else ""
    detail = f"{status.url} ({status.backend}{size}); schema revision {revision}"
    if status.schema_revision is None:
        return Check(
            "Database",
            "warn",
            detail,
            "The database has no schema version; the app migrates it on the next launch.",
            facts,
        )
    return Check("Database", "ok", detail, facts=facts)


def _check_model_bundle(settings: Settings) -> Check:
    choice = choose_bundle(settings)
    if choice.path is None:
        return Check(
            "Model bundle",
            "warn",
            "none installed: cases can be viewed and documented but not analysed.",
            "Install a bundle into the data folder's models/ or set model_bundle in settings.toml.",
        )
    try:
        info = verify_model_bundle(choice.path)
    except ClinicError as exc:
        return Check("Model bundle", "fail", exc.message, "Reinstall the bundle.")
    extra = info.metadata.get("extra") or {}
    composite = (
        "; trained on COMPOSITE demo cases (different patients per modality): "
        "for demonstration only"
        if isinstance(extra, dict) and extra.get("composite_cases")
        else ""
    )
    return Check(
        "Model bundle",
        "ok",
        f"{info.name} {info.version}, sha256 {info.sha256[:16]}..., all {len(info.files)} "
        f"files verified ({info.path}){composite}",
        facts={
            "name": info.name,
            "version": info.version,
            "sha256": info.sha256,
            "path": str(info.path),
        },
    )


def quick_checks(settings: Settings) -> list[Check]:
    """The checks that need neither torch nor a Qt child process (for the main window)."""
    return [
        _check_data_dir(settings),
        _check_database(settings),
        _check_model_bundle(settings),
    ]


def run_doctor(
    settings: Settings,
    *,
    qt_timeout_s: float = QT_PROBE_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> DoctorReport:
    """Run every check; never raises for a broken environment, it reports it."""
    steps: Sequence[tuple[str, Callable[[], Check]]] = (
        ("ClinicFusion", _check_app),
        ("Python", _check_python),
        ("PyTorch", _check_torch),
        ("Qt", lambda: _check_qt(qt_timeout_s)),
        ("Data folder", lambda: _check_data_dir(settings)),
        ("Database", lambda: _check_database(settings)),
        ("Model bundle", lambda: _check_model_bundle(settings)),
    )
    checks = []
    for name, step in steps:
        if progress is not None:
            progress(name)
        checks.append(step())
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return DoctorReport(checks=checks, created_utc=created)
