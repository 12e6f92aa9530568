"""The services one signed-in session of the desktop app uses, built once from the settings.

The GUI holds one of these (plus the signed-in Actor) and calls its services from workers;
nothing here imports Qt, so the same composition serves tests and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinic_app.config.settings import Settings
from clinic_app.services.cases import CaseService
from clinic_app.services.identifiers import PatientIdentifierCipher
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database


@dataclass
class AppServices:
    """Settings, database and the case services over it."""

    settings: Settings
    database: Database
    cases: CaseService
    ingest: IngestService

    @classmethod
    def create(cls, settings: Settings, database: Database) -> AppServices:
        """Case and import services over ``database`` with this workstation's keys."""
        cases = CaseService(
            database,
            settings.inputs_dir,
            identifiers=PatientIdentifierCipher.from_settings(settings),
        )
        return cls(settings, database, cases, IngestService.from_settings(cases, settings))
