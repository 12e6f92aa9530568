"""The preferences a person edits in the Settings dialog, read from and written to settings.toml.

The file is the one :func:`clinic_app.config.settings.load_settings` reads (``settings.toml`` in
the data dir). Writing keeps what the dialog does not manage: the keys this module changes are
edited in place, line by line, so other settings and comments survive; only if the file is too
unusual for that (multi-line values, dotted keys) are the known keys rewritten from scratch.
The new file replaces the old one atomically (temporary file, fsync, ``os.replace``), so a crash
leaves either the old settings or the new, never half a file.

Layout written (and read by ``load_settings``)::

    model_bundle = "/path/to/bundle"     # absent: the app chooses one
    device = "auto"                      # auto | cpu | cuda | mps

    [display]
    theme = "system"                     # system | light | dark
    date_locale = "system"               # or a locale such as en_GB

    [report]
    include_heatmaps = true
    include_note_highlights = true
    institution = ""
    footer = ""

Changing the theme or the date format is a personal choice; changing the model, the device or
the report defaults needs ``settings.change`` when an actor is given, and is audited
("settings.update").
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinic_app.config.settings import (
    DATE_LOCALES,
    DEVICES,
    ENV_MODEL_BUNDLE,
    SETTINGS_FILENAME,
    THEMES,
    Settings,
)
from clinic_app.domain.errors import ConfigError, InputError
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction
from clinic_app.services.authorization import authorize
from clinic_app.services.context import Actor, record_audit
from clinic_app.storage.engine import Database

__all__ = [
    "DATE_LOCALES",
    "DEVICES",
    "PERSONAL_PREFERENCES",
    "THEMES",
    "ComputeSummary",
    "Preferences",
    "detect_compute",
    "save_preferences",
    "settings_path",
]

#: Preferences anyone may change; the others need ``settings.change`` (see save_preferences).
PERSONAL_PREFERENCES = frozenset({"theme", "date_locale"})

#: Where each preference lives in settings.toml: (table or None for the top level, key).
_LOCATIONS: dict[str, tuple[str | None, str]] = {
    "model_bundle": (None, "model_bundle"),
    "device": (None, "device"),
    "theme": ("display", "theme"),
    "date_locale": ("display", "date_locale"),
    "report_include_heatmaps": ("report", "include_heatmaps"),
    "report_include_note_highlights": ("report", "include_note_highlights"),
    "report_institution": ("report", "institution"),
    "report_footer": ("report", "footer"),
}

_HEADER = (
    "# ClinicFusion settings (see the README). The Settings dialog edits the keys it manages\n"
    "# and keeps everything else in this file, comments included.\n"
)


@dataclass(frozen=True)
class Preferences:
    """The user-editable part of :class:`Settings`, as the Settings dialog shows it."""

    model_bundle: Path | None = None
    device: str = "auto"
    theme: str = "system"
    date_locale: str = "system"
    report_include_heatmaps: bool = True
    report_include_note_highlights: bool = True
    report_institution: str = ""
    report_footer: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Preferences:
        return cls(**{name: getattr(settings, name) for name in _LOCATIONS})

    def validate(self) -> Preferences:
        """Return the preferences tidied up, or raise InputError naming the bad value."""
        if self.device not in DEVICES:
            raise InputError(f"The device '{self.device}' is not one of {', '.join(DEVICES)}.")
        if self.theme not in THEMES:
            raise InputError(f"The theme '{self.theme}' is not one of {', '.join(THEMES)}.")
        locale = self.date_locale.strip()
        if locale != "system" and not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", locale):
            raise InputError(
                f"'{locale}' is not a locale name; use 'system' or one such as en_GB or de_DE."
            )
        bundle = self.model_bundle
        if bundle is not None:
            bundle = Path(bundle).expanduser().resolve()
        return dataclasses.replace(
            self,
            model_bundle=bundle,
            date_locale=locale,
            report_institution=self.report_institution.strip(),
            report_footer=self.report_footer.strip(),
        )

    def changes(self, other: Preferences) -> dict[str, tuple[object, object]]:
        """``{name: (this value, other's value)}`` for every preference that differs."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in _LOCATIONS
            if getattr(self, name) != getattr(other, name)
        }


def settings_path(settings: Settings) -> Path:
    """The settings file of ``settings``' data dir (it may not exist yet)."""
    return settings.data_dir / SETTINGS_FILENAME


def model_bundle_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The bundle named by CLINICFUSION_MODEL_BUNDLE, which overrides the file at start-up."""
    value = (os.environ if environ is None else environ).get(ENV_MODEL_BUNDLE, "").strip()
    return value or None


# -- writing ----------------------------------------------------------------------------------
def save_preferences(
    settings: Settings,
    preferences: Preferences,
    *,
    database: Database | None = None,
    actor: Actor | None = None,
) -> Settings:
    """Write ``preferences`` into the settings file and return the settings with them applied.

    With ``database`` and ``actor``, changes other than the theme and date format need
    ``settings.change`` (refusals are audited) and the change is audited as one
    "settings.update" event listing the old and new values. The file is replaced atomically.
    """
    new = preferences.validate()
    old = Preferences.from_settings(settings)
    changed = old.changes(new)
    if database is not None and actor is not None and set(changed) - PERSONAL_PREFERENCES:
        authorize(
            database, actor, Permission.SETTINGS_CHANGE, "settings.update", AuditAction.UPDATE
        )
    path = settings_path(settings)
    if database is not None and actor is not None and changed:
        # The event and the file change together: a failed write rolls the event back.
        with database.write() as session:
            record_audit(
                session,
                actor,
                "settings.update",
                AuditAction.UPDATE,
                details={
                    "file": path.name,
                    "changed": {
                        name: {"from": _json_value(before), "to": _json_value(after)}
                        for name, (before, after) in changed.items()
                    },
                },
            )
            _write_settings_file(path, new)
    else:
        _write_settings_file(path, new)
    return dataclasses.replace(
        settings, settings_file=path, **{name: getattr(new, name) for name in _LOCATIONS}
    )


def _json_value(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def _file_values(preferences: Preferences) -> dict[tuple[str | None, str], object | None]:
    """The TOML values to write; None removes the key (no bundle named: the app chooses)."""
    values: dict[tuple[str | None, str], object | None] = {}
    for name, location in _LOCATIONS.items():
        value = getattr(preferences, name)
        values[location] = str(value) if isinstance(value, Path) else value
    return values


def _write_settings_file(path: Path, preferences: Preferences) -> None:
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError as exc:
        raise ConfigError(f"The settings file {path} cannot be read ({exc.strerror}).") from exc
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The settings file {path} is not valid TOML ({exc}), so it was not changed.",
            hint="Fix the line named above or delete the file to go back to the defaults.",
        ) from exc
    updates = _file_values(preferences)
    expected = _merged(current, updates)
    new_text = _edit_in_place(text or _HEADER, updates)
    try:
        if tomllib.loads(new_text) != expected:
            new_text = _HEADER + _dump(expected)
    except tomllib.TOMLDecodeError:
        new_text = _HEADER + _dump(expected)
    _replace_atomically(path, new_text)


def _merged(
    current: dict[str, Any], updates: Mapping[tuple[str | None, str], object | None]
) -> dict[str, Any]:
    merged: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value for key, value in current.items()
    }
    for (table, key), value in updates.items():
        target = merged if table is None else merged.setdefault(table, {})
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return merged


def _replace_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temporary.open("w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if path.exists():
                temporary.chmod(path.stat().st_mode & 0o777)
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"The settings file {path} cannot be written ({exc.strerror or exc}).",
            hint="Check that the data folder is writable; the previous settings are unchanged.",
        ) from exc


# -- a small TOML writer for the values we manage (strings, booleans, numbers) ----------------
_HEADER_LINE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    escaped = []
    for char in text:
        if char == "\\":
            escaped.append("\\\\")
        elif char == '"':
            escaped.append('\\"')
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\t":
            escaped.append("\\t")
        elif char == "\r":
            escaped.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _dump(data: Mapping[str, Any]) -> str:
    """Top-level values first, then one ``[table]`` per dict (all settings.toml needs)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if not _is_table(value)]
    for key, value in data.items():
        if _is_table(value):
            lines.append("")
            lines.append(f"[{key}]")
            lines.extend(f"{name} = {_toml_value(item)}" for name, item in value.items())
    return "\n".join(lines) + "\n"


def _is_table(value: object) -> bool:
    return isinstance(value, dict)


def _section(lines: list[str], table: str | None) -> tuple[int, int] | None:
    """The [start, end) line range of ``table``'s keys (top level: before the first header)."""
    headers: list[tuple[int, str | None]] = []
    for index, line in enumerate(lines):
        if _ANY_HEADER.match(line):
            match = _HEADER_LINE.match(line.rstrip("\n"))
            headers.append((index, match.group(1) if match else None))
    if table is None:
        return 0, headers[0][0] if headers else len(lines)
    for position, (index, name) in enumerate(headers):
        if name == table:
            end = headers[position + 1][0] if position + 1 < len(headers) else len(lines)
            return index + 1, end
    return None


def _edit_in_place(text: str, updates: Mapping[tuple[str | None, str], object | None]) -> str:
    """Set, add or remove each key in place, leaving every other line as it was."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for (table, key), value in updates.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        span = _section(lines, table)
        if span is None:
            if value is None:
                continue
            if lines and lines[-1].strip():
                lines.append("\n")
            lines.extend([f"[{table}]\n", f"{key} = {_toml_value(value)}\n"])
            continue
        start, end = span
        found = next((i for i in range(start, end) if pattern.match(lines[i])), None)
        if found is not None:
            if value is None:
                del lines[found]
            else:
                indent = lines[found][: len(lines[found]) - len(lines[found].lstrip())]
                lines[found] = f"{indent}{key} = {_toml_value(value)}\n"
        elif value is not None:
            insert_at = end
            while insert_at > start and not lines[insert_at - 1].strip():
                insert_at -= 1
            lines.insert(insert_at, f"{key} = {_toml_value(value)}\n")
    return "".join(lines)


# -- what the device choice can use -----------------------------------------------------------
@dataclass(frozen=True)
class ComputeSummary:
    """What the installed PyTorch can run on, in words for the Settings dialog."""

    available: tuple[str, ...]  # devices that work here, e.g. ("cpu",) or ("cpu", "cuda")
    auto_device: str
    description: str
    gpus: tuple[str, ...] = field(default_factory=tuple)


def detect_compute() -> ComputeSummary:
    """Import torch (slow the first time: call it off the GUI thread) and describe its devices."""
    try:
        from model.device import describe_compute

        info = describe_compute()
    except ImportError:
        return ComputeSummary(
            available=("cpu",),
            auto_device="cpu",
            description="PyTorch is not installed, so the model cannot run on this computer.",
        )
    available = ["cpu"]
    if info.cuda_available:
        available.append("cuda")
    if info.mps_available:
        available.append("mps")
    if info.cuda_available:
        found = f"GPU: {', '.join(info.cuda_devices)}"
    elif info.mps_available:
        found = "Apple GPU (MPS)"
    else:
        found = "no GPU found"
    return ComputeSummary(
        available=tuple(available),
        auto_device=info.best_device,
        description=f"PyTorch {info.torch_version} ({info.build} build), {found}; "
        f"Automatic uses {_DEVICE_WORDS[info.best_device]}.",
        gpus=tuple(info.cuda_devices),
    )


_DEVICE_WORDS = {"cpu": "the CPU", "cuda": "the GPU (CUDA)", "mps": "the Apple GPU (MPS)"}
