"""Typed settings: where ClinicFusion keeps its data, and how a user or admin changes that.

Precedence, lowest first: built-in defaults (platformdirs' user data dir) < ``settings.toml``
in the data dir < ``CLINICFUSION_*`` environment variables < command-line flags. The data dir
itself comes from ``--data-dir``, else ``CLINICFUSION_DATA_DIR``, else the per-user default, so
a second data dir is a fully separate installation (handy for tests, training and portable use).

Portable mode (for hospitals that block installs): with a ``portable.flag`` file beside the
executable, ``--portable`` or ``CLINICFUSION_PORTABLE=1``, the data and the keys live beside the
executable, in two sibling folders (see :func:`portable_paths`), instead of the per-user folders.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from clinic_app.domain.errors import ConfigError

APP_NAME = "ClinicFusion"
SETTINGS_FILENAME = "settings.toml"
DATABASE_FILENAME = "clinicfusion.sqlite3"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: "none": a plain SQLite file (or a server); "sqlcipher": the SQLite file is encrypted at rest.
ENCRYPTION_MODES = ("none", "sqlcipher")
#: Where the model runs: "auto" picks CUDA, then Apple MPS, then the CPU (model.predictor).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: "system" follows the desktop's light or dark colour scheme.
THEMES = ("system", "light", "dark")
#: Locales offered for formatting dates; any ``ll_CC`` name is accepted in the file.
DATE_LOCALES = ("system", "en_GB", "en_US", "de_DE", "fr_FR")
_LOCALE_PATTERN = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")

ENV_DATA_DIR = "CLINICFUSION_DATA_DIR"
ENV_DATABASE_URL = "CLINICFUSION_DATABASE_URL"
ENV_MODEL_BUNDLE = "CLINICFUSION_MODEL_BUNDLE"
ENV_LOG_LEVEL = "CLINICFUSION_LOG_LEVEL"
ENV_KEYS_DIR = "CLINICFUSION_KEYS_DIR"
ENV_DB_ENCRYPTION = "CLINICFUSION_DB_ENCRYPTION"
ENV_READ_TIMEOUT = "CLINICFUSION_READ_TIMEOUT_S"
ENV_PORTABLE = "CLINICFUSION_PORTABLE"

#: A file of this name beside the executable switches portable mode on (its content is ignored;
#: ``portable.flag.txt`` also counts, as Windows Explorer hides and appends ``.txt``).
PORTABLE_MARKERS = ("portable.flag", "portable.flag.txt")
#: The portable data and keys folders, siblings beside the executable: copying the data folder
#: alone (a backup, a share) carries no key, as with the per-user folders.
PORTABLE_DATA_FOLDER = "ClinicFusion-data"
PORTABLE_KEYS_FOLDER = "ClinicFusion-keys"
_TRUE_WORDS = ("1", "true", "yes", "on")


def default_data_dir() -> Path:
    """The per-user data folder, e.g. ``~/.local/share/ClinicFusion`` on Linux."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False, roaming=False))


def default_keys_dir() -> Path:
    """Secrets kept apart from the data (audit HMAC key, database key when no OS keyring):
    ``~/.config/ClinicFusion/keys`` on Linux. A copy of the data folder alone cannot forge the
    audit trail's checkpoints. On Windows and macOS the per-user config folder *is* the data
    folder, so the keys go to a sibling (``%LOCALAPPDATA%\\ClinicFusion-keys``) instead."""
    config = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False, roaming=False))
    data = default_data_dir()
    if config == data or data in config.parents:
        return data.parent / f"{APP_NAME}-keys"
    return config / "keys"


def application_dir() -> Path:
    """The folder the app runs from: beside the executable of a frozen bundle (beside the
    ``.app`` on macOS), else the Python environment's root (``sys.prefix``, e.g. the venv)."""
    if getattr(sys, "frozen", False):
        exe_dir = Path(sys.executable).resolve().parent
        in_app_bundle = exe_dir.name == "MacOS" and exe_dir.parent.name == "Contents"
        if sys.platform == "darwin" and in_app_bundle:
            return exe_dir.parent.parent.parent  # .../ClinicFusion.app/Contents/MacOS
        return exe_dir
    return Path(sys.prefix).resolve()


def portable_marker(app_dir: Path | None = None) -> Path | None:
    """The ``portable.flag`` file beside the executable, if there is one."""
    folder = application_dir() if app_dir is None else app_dir
    for name in PORTABLE_MARKERS:
        if (folder / name).is_file():
            return folder / name
    return None


def portable_paths(app_dir: Path | None = None) -> tuple[Path, Path]:
    """The portable data folder and keys folder (siblings, beside the executable)."""
    folder = application_dir() if app_dir is None else app_dir
    return folder / PORTABLE_DATA_FOLDER, folder / PORTABLE_KEYS_FOLDER


def is_portable(
    flag: bool = False, environ: Mapping[str, str] | None = None, app_dir: Path | None = None
) -> bool:
    """Portable mode: the ``--portable`` flag, ``CLINICFUSION_PORTABLE=1``, or the marker file."""
    env = os.environ if environ is None else environ
    if flag or env.get(ENV_PORTABLE, "").strip().lower() in _TRUE_WORDS:
        return True
    return portable_marker(app_dir) is not None


@dataclass(frozen=True)
class Settings:
    """Everything that decides where data lives and how the app behaves; immutable once loaded."""

    data_dir: Path
    database_url: str
    model_bundle: Path | None = None
    log_level: str = "INFO"
    keys_dir: Path = field(default_factory=default_keys_dir)
    settings_file: Path | None = field(default=None, compare=False)
    encryption: str = "none"
    #: Seconds and memory a child process gets to read one file from outside (io.sandbox).
    read_timeout_s: float = 10.0
    read_memory_mb: int = 2048
    #: Preferences edited in the GUI's Settings dialog (``device`` top level, ``[display]`` and
    #: ``[report]`` tables in settings.toml); see clinic_app.services.preferences.
    device: str = "auto"
    theme: str = "system"
    date_locale: str = "system"
    report_include_heatmaps: bool = True
    report_include_note_highlights: bool = True
    report_institution: str = ""
    report_footer: str = ""
    #: Portable mode: data and keys beside the executable (see :func:`portable_paths`).
    portable: bool = False

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "clinicfusion.log"

    @property
    def exports_dir(self) -> Path:
        """Reports and exports written by the app (PDF, DICOM, FHIR)."""
        return self.data_dir / "exports"

    @property
    def inputs_dir(self) -> Path:
        """Copies of imported files, addressed by sha256."""
        return self.data_dir / "inputs"

    @property
    def models_dir(self) -> Path:
        """Model bundles installed or trained by this clinic."""
        return self.data_dir / "models"

    @property
    def database_path(self) -> Path | None:
        """The SQLite file, or None when the database is a server (PostgreSQL)."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and self.database_url != "sqlite:///:memory:":
            return Path(self.database_url[len(prefix) :])
        return None


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _read_settings_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The settings file {path} is not valid TOML ({exc}).",
            hint="Fix the line named above or delete the file to go back to the defaults.",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"The settings file {path} cannot be read ({exc.strerror}).") from exc

    allowed: dict[str, type | tuple[type, ...]] = {
        "database_url": str,
        "model_bundle": str,
        "log_level": str,
        "encryption": str,
        "read_timeout_s": (int, float),
        "read_memory_mb": int,
        "device": str,
        "display": dict,
        "report": dict,
    }
    _check_keys(raw, allowed, path, "")
    for table, keys in _TABLES.items():
        section = raw.get(table)
        if isinstance(section, dict):
            _check_keys(section, keys, path, f"{table}.")
    return raw


#: The keys of the ``[display]`` and ``[report]`` tables in settings.toml.
_TABLES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "display": {"theme": str, "date_locale": str},
    "report": {
        "include_heatmaps": bool,
        "include_note_highlights": bool,
        "institution": str,
        "footer": str,
    },
}


def _check_keys(
    raw: Mapping[str, object],
    allowed: Mapping[str, type | tuple[type, ...]],
    path: Path,
    prefix: str,
) -> None:
    """Refuse unknown keys and values of the wrong type (a bool is not a number here)."""
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(
                f"The settings file {path} has an unknown setting '{prefix}{key}'.",
                hint=f"Known settings: {', '.join(prefix + name for name in sorted(allowed))}.",
            )
        kind = allowed[key]
        wrong_bool = isinstance(value, bool) and kind is not bool
        if not isinstance(value, kind) or wrong_bool:
            if kind is dict:
                raise ConfigError(
                    f"The setting '{key}' in {path} must be a table ([{key}]), not {value!r}."
                )
            words = "text in quotes" if kind is str else "true or false" if kind is bool else ""
            words = words or "a number"
            raise ConfigError(
                f"The setting '{prefix}{key}' in {path} must be {words}, not {value!r}."
            )


def _check_log_level(value: str, source: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"The log level '{value}' from {source} is not one of {', '.join(LOG_LEVELS)}."
        )
    return level


def _check_encryption(value: str, source: str, database_url: str) -> str:
    mode = value.strip().lower()
    if mode not in ENCRYPTION_MODES:
        raise ConfigError(
            f"The database encryption '{value}' from {source} is not one of "
            f"{', '.join(ENCRYPTION_MODES)}."
        )
    if mode == "sqlcipher" and not database_url.startswith("sqlite:"):
        raise ConfigError(
            f"The database encryption 'sqlcipher' from {source} applies to SQLite files only, "
            "and the database is not a SQLite file.",
            hint="For PostgreSQL, encrypt the server's storage and use TLS; set encryption "
            "to 'none'.",
        )
    return mode


def load_settings(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    log_level: str | None = None,
    environ: Mapping[str, str] | None = None,
    portable: bool = False,
    app_dir: Path | None = None,
) -> Settings:
    """Resolve the settings from defaults, the settings file, the environment and flags.

    In portable mode (``portable``, ``CLINICFUSION_PORTABLE`` or the marker file beside the
    executable in ``app_dir``) the defaults of the data and keys folders are the portable
    folders; an explicit ``--data-dir`` or environment variable still wins.
    Raises :class:`ConfigError` naming the file, variable or value that is wrong.
    """
    env = os.environ if environ is None else environ
    portable_mode = is_portable(portable, env, app_dir)
    portable_data, portable_keys = portable_paths(app_dir) if portable_mode else (None, None)
    if data_dir is not None and str(data_dir).strip():
        root = Path(data_dir)
    elif env.get(ENV_DATA_DIR, "").strip():
        root = Path(env[ENV_DATA_DIR])
    elif portable_data is not None:
        root = portable_data
    else:
        root = default_data_dir()
    root = root.expanduser().resolve()

    settings_file = root / SETTINGS_FILENAME
    from_file = _read_settings_file(settings_file) if settings_file.is_file() else {}

    database_url = str(
        env.get(ENV_DATABASE_URL)
        or from_file.get("database_url")
        or _sqlite_url(root / DATABASE_FILENAME)
    )
    bundle_text = env.get(ENV_MODEL_BUNDLE) or from_file.get("model_bundle")
    model_bundle = Path(str(bundle_text)).expanduser() if bundle_text else None
    if model_bundle is not None and not model_bundle.is_absolute():
        model_bundle = (root / model_bundle).resolve()

    if log_level is not None:
        level = _check_log_level(log_level, "--log-level")
    elif env.get(ENV_LOG_LEVEL):
        level = _check_log_level(env[ENV_LOG_LEVEL], ENV_LOG_LEVEL)
    elif "log_level" in from_file:
        level = _check_log_level(str(from_file["log_level"]), str(settings_file))
    else:
        level = "INFO"

    if env.get(ENV_DB_ENCRYPTION, "").strip():
        encryption = _check_encryption(env[ENV_DB_ENCRYPTION], ENV_DB_ENCRYPTION, database_url)
    elif "encryption" in from_file:
        encryption = _check_encryption(
            str(from_file["encryption"]), str(settings_file), database_url
        )
    else:
        encryption = "none"

    if env.get(ENV_KEYS_DIR, "").strip():
        keys_dir = Path(env[ENV_KEYS_DIR])
    elif portable_keys is not None:
        keys_dir = portable_keys
    else:
        keys_dir = default_keys_dir()
    read_timeout = _check_range(
        env.get(ENV_READ_TIMEOUT) or from_file.get("read_timeout_s", 10.0),
        "read_timeout_s",
        ENV_READ_TIMEOUT if env.get(ENV_READ_TIMEOUT) else str(settings_file),
        1.0,
        600.0,
    )
    read_memory = _check_range(
        from_file.get("read_memory_mb", 2048), "read_memory_mb", str(settings_file), 256, 65536
    )
    display = from_file.get("display", {})
    report = from_file.get("report", {})
    assert isinstance(display, dict) and isinstance(report, dict)
    source = str(settings_file)
    device = _check_choice(str(from_file.get("device", "auto")), "device", DEVICES, source)
    theme = _check_choice(str(display.get("theme", "system")), "display.theme", THEMES, source)
    date_locale = str(display.get("date_locale", "system")).strip()
    if date_locale != "system" and not _LOCALE_PATTERN.fullmatch(date_locale):
        raise ConfigError(
            f"The setting 'display.date_locale' from {source} is '{date_locale}'; use 'system' "
            "or a locale name such as en_GB or de_DE."
        )
    return Settings(
        data_dir=root,
        keys_dir=keys_dir.expanduser().resolve(),
        database_url=database_url,
        model_bundle=model_bundle,
        log_level=level,
        settings_file=settings_file if from_file else None,
        encryption=encryption,
        read_timeout_s=read_timeout,
        read_memory_mb=int(read_memory),
        device=device,
        theme=theme,
        date_locale=date_locale,
        report_include_heatmaps=bool(report.get("include_heatmaps", True)),
        report_include_note_highlights=bool(report.get("include_note_highlights", True)),
        report_institution=str(report.get("institution", "")).strip(),
        report_footer=str(report.get("footer", "")).strip(),
        portable=portable_mode,
    )


def _check_choice(value: str, name: str, choices: tuple[str, ...], source: str) -> str:
    choice = value.strip().lower()
    if choice not in choices:
        raise ConfigError(
            f"The setting '{name}' from {source} is '{value}'; use one of {', '.join(choices)}."
        )
    return choice


def _check_range(value: object, name: str, source: str, low: float, high: float) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"The setting '{name}' from {source} must be a number.") from None
    if not low <= number <= high:
        raise ConfigError(
            f"The setting '{name}' from {source} is {number:g}; it must be between "
            f"{low:g} and {high:g}."
        )
    return number


def ensure_data_dirs(settings: Settings) -> None:
    """Create the data folders and prove they are writable, or raise one clear ConfigError."""
    for folder in (settings.data_dir, settings.logs_dir, settings.exports_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"The data folder {folder} cannot be created ({exc.strerror or exc}).",
                hint="Choose another folder with --data-dir or fix the folder's permissions.",
            ) from exc
    probe = settings.data_dir / ".write-test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"The data folder {settings.data_dir} cannot be written ({exc.strerror or exc}).",
            hint="Choose another folder with --data-dir or fix the folder's permissions.",
        ) from exc
