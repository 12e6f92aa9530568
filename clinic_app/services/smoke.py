"""The installation smoke check (`clinic-app smoke`, `ClinicFusion --smoke`): the whole chain
once, in a throwaway folder, so a clinic's IT (and the bundle build) can prove an install works.

It creates a fresh database (every migration), two accounts (argon2), seeds the composite demo
case that needs no optional files (pydicom's ECG and scikit-image's IHC micrograph, each read in
the capped child process), runs the model in its own child process exactly as the desktop app
does (the frozen bundle re-runs its executable there), writes the PDF report, checks the report
is recorded and the audit trail verifies. Nothing touches the user's data, keys or OS keyring.
The Qt check lives in the GUI layer and is passed in as ``window_check``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from clinic_app.config.settings import ENV_KEYS_DIR, Settings, ensure_data_dirs, load_settings
from clinic_app.domain.errors import ClinicError
from clinic_app.domain.records import ReportKind, Role
from clinic_app.services.context import Actor
from clinic_app.storage.engine import Database

if TYPE_CHECKING:
    from clinic_app.services.cases import CaseService
    from clinic_app.services.ingest import IngestService

#: The demo recipe's case that needs no optional package (see assets/demo/recipe.json).
SMOKE_DEMO_CASE = "colon-ihc"
T = TypeVar("T")

#: Checks the main window once (GUI layer); gets the settings, the database and a clinician,
#: returns one line saying what it saw, raises on failure.
WindowCheck = Callable[[Settings, Database, Actor], str]


class SmokeCheckFailed(ClinicError):
    """One step of the smoke check failed; the message names the step and the cause."""

    exit_code = 1


@dataclass(frozen=True)
class SmokeStep:
    """One step that passed: its name, how long it took and what it saw."""

    name: str
    seconds: float
    detail: str


@dataclass
class SmokeResult:
    """Every step that passed, in order; ``report`` is the PDF written (in the temp folder)."""

    root: Path
    steps: list[SmokeStep] = field(default_factory=list)
    case_uid: str = ""
    report: Path | None = None

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


def smoke_settings(root: Path) -> Settings:
    """Settings of a fresh, separate installation under ``root`` (data and keys folders), not
    influenced by the user's environment, settings file or portable marker."""
    return load_settings(
        root / "data", environ={ENV_KEYS_DIR: str(root / "keys")}, app_dir=root / "app"
    )


def run_smoke(
    root: Path,
    *,
    device: str = "auto",
    window_check: WindowCheck | None = None,
    progress: Callable[[str], None] | None = None,
) -> SmokeResult:
    """Run every step under ``root`` (an empty folder the caller removes); raise
    :class:`SmokeCheckFailed` naming the first step that failed."""
    from clinic_app.services.cases import CaseService
    from clinic_app.services.database import open_database
    from clinic_app.services.ingest import IngestService

    settings = smoke_settings(root)
    result = SmokeResult(root=root)

    def step(name: str, action: Callable[[], tuple[T, str]]) -> T:
        if progress is not None:
            progress(f"{name}…")
        started = time.perf_counter()
        try:
            value, detail = action()
        except SmokeCheckFailed:
            raise
        except ClinicError as exc:
            raise SmokeCheckFailed(f"The smoke check failed at '{name}': {exc}") from exc
        except Exception as exc:
            raise SmokeCheckFailed(
                f"The smoke check failed at '{name}': {type(exc).__name__}: {exc}",
                hint="Send this output and `clinic-app doctor` to whoever built this install.",
            ) from exc
        result.steps.append(SmokeStep(name, time.perf_counter() - started, detail))
        return value

    def open_db() -> tuple[Database, str]:
        from clinic_app.storage.migrate import current_revision, head_revision

        ensure_data_dirs(settings)
        database = open_database(settings)
        revision = current_revision(database)
        if revision != head_revision():
            raise SmokeCheckFailed(f"The new database is at schema {revision}, not the newest.")
        return database, f"new SQLite database at schema {revision}"

    database = step("database", open_db)
    try:
        admin, clinician = step("accounts", lambda: _accounts(database))
        cases = CaseService(database, settings.inputs_dir)
        ingest = IngestService.from_settings(cases, settings)
        result.case_uid = step("demo case", lambda: _seed(cases, ingest, admin, clinician))
        if window_check is not None:
            check = window_check
            step("main window", lambda: (None, check(settings, database, clinician)))
        step("analysis", lambda: _analyse(cases, settings, clinician, result.case_uid, device))
        result.report = step(
            "PDF report", lambda: _report(cases, settings, clinician, result.case_uid)
        )
        step("audit trail", lambda: _audit(database))
    finally:
        database.dispose()
    return result


def _accounts(database: Database) -> tuple[tuple[Actor, Actor], str]:
    from clinic_app.services.users import authenticate, create_first_admin, create_user

    password = secrets.token_urlsafe(18)
    create_first_admin(database, "smoke-admin", password)
    admin = authenticate(database, "smoke-admin", password)
    create_user(database, admin, "smoke-clinician", password, Role.CLINICIAN)
    clinician = authenticate(database, "smoke-clinician", password)
    return (admin, clinician), "administrator and clinician created and signed in (argon2)"


def _seed(
    cases: CaseService, ingest: IngestService, admin: Actor, clinician: Actor
) -> tuple[str, str]:
    from clinic_app.services.demo_cases import seed_demo_cases

    created = seed_demo_cases(cases, ingest, admin, keys=[SMOKE_DEMO_CASE])
    if len(created) != 1:
        raise SmokeCheckFailed(f"Seeding made {len(created)} demo cases instead of one.")
    summary = created[0]
    detail = cases.get_case(clinician, summary.case_uid)
    kinds = sorted(item.modality.value for item in detail.inputs)
    return summary.case_uid, f"{summary.case_uid} with {', '.join(kinds)} (read in the sandbox)"


def _analyse(
    cases: CaseService, settings: Settings, clinician: Actor, case_uid: str, device: str
) -> tuple[None, str]:
    from clinic_app.services.case_analysis import analyse_case
    from clinic_app.services.model_host import ModelHost

    host = ModelHost()  # the desktop app's way: the model in its own child process
    try:
        info = analyse_case(cases, settings, clinician, case_uid, device=device, host=host)
    finally:
        host.close()
    if not info.suggestions:
        raise SmokeCheckFailed("The analysis stored no suggestion.")
    top = max(info.suggestions, key=lambda s: s.probability)
    return None, (
        f"{info.model_name} {info.model_version} on {info.device} in the model process: "
        f"{len(info.suggestions)} suggestions, top '{top.display}' {top.probability:.2f}"
    )


def _report(
    cases: CaseService, settings: Settings, clinician: Actor, case_uid: str
) -> tuple[Path, str]:
    from sqlalchemy import select

    from clinic_app.services.reports import export_report
    from clinic_app.storage.orm import Report

    folder = settings.exports_dir / "smoke"
    folder.mkdir(parents=True, exist_ok=True)
    exported = export_report(cases, settings, clinician, case_uid, ReportKind.PDF, folder)
    payload = exported.path.read_bytes()
    if not payload.startswith(b"%PDF-"):
        raise SmokeCheckFailed(f"The report {exported.path} is not a PDF file.")
    with cases.database.read() as session:
        recorded = session.scalars(select(Report).where(Report.sha256 == exported.sha256)).all()
    if len(recorded) != 1 or recorded[0].kind != ReportKind.PDF:
        raise SmokeCheckFailed("The PDF report was written but not recorded in the database.")
    return exported.path, f"{exported.path.name}, {len(payload) / 1024:.0f} KiB, recorded"


def _audit(database: Database) -> tuple[None, str]:
    from clinic_app.services.audit import verify

    outcome = verify(database)
    if not outcome.ok:
        raise SmokeCheckFailed(f"The audit trail does not verify: {outcome.describe()}")
    return None, f"{outcome.events_checked} events verify"
