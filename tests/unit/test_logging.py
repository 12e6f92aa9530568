from __future__ import annotations

import logging
import logging.handlers

from clinic_app.config.logging_setup import LOG_BACKUPS, LOG_MAX_BYTES, setup_logging
from clinic_app.config.settings import Settings, ensure_data_dirs, load_settings


def _ours(settings: Settings) -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
        and h.baseFilename == str(settings.log_file)
    ]


def test_log_records_go_to_a_rotating_file_in_the_data_dir(settings: Settings) -> None:
    ensure_data_dirs(settings)
    setup_logging(settings, stderr_level=None)
    logging.getLogger("clinic_app.test").info("case %s opened", "C-0001")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = settings.log_file.read_text(encoding="utf-8")
    assert "INFO" in text
    assert "clinic_app.test: case C-0001 opened" in text
    (handler,) = _ours(settings)
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert handler.maxBytes == LOG_MAX_BYTES
    assert handler.backupCount == LOG_BACKUPS


def test_setting_up_twice_does_not_duplicate_lines(settings: Settings) -> None:
    ensure_data_dirs(settings)
    setup_logging(settings, stderr_level=None)
    setup_logging(settings, stderr_level=None)
    assert len(_ours(settings)) == 1
    logging.getLogger("clinic_app.test").warning("once")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert settings.log_file.read_text(encoding="utf-8").count("once") == 1


def test_log_level_from_settings_filters_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(tmp_path, log_level="WARNING", environ={})
    ensure_data_dirs(settings)
    setup_logging(settings, stderr_level=None)
    logging.getLogger("clinic_app.test").info("quiet detail")
    logging.getLogger("clinic_app.test").error("loud problem")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = settings.log_file.read_text(encoding="utf-8")
    assert "loud problem" in text
    assert "quiet detail" not in text
