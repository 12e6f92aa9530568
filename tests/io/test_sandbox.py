"""The child process that parses untrusted files: results, caps, timeouts, crashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clinic_app.domain.errors import InputError
from clinic_app.io.limits import ReadLimits
from clinic_app.io.sandbox import ChildReport, run_isolated
from tests.io import sandbox_targets as targets

FILE = Path("/incoming/scan.dcm")
pytestmark = pytest.mark.skipif(os.name != "posix", reason="memory caps need POSIX rlimits")


def test_result_comes_back_with_a_report() -> None:
    reports: list[ChildReport] = []
    assert run_isolated(targets.double, 21, path=FILE, report=reports) == 42
    assert reports and reports[0].peak_rss_bytes > 0


def test_input_error_keeps_its_message_and_hint() -> None:
    with pytest.raises(InputError) as caught:
        run_isolated(targets.refuse, path=FILE)
    assert caught.value.message == "scan.dcm: truncated pixel data: 8,130 of 8,192 bytes"
    assert caught.value.hint == "Re-export it."


def test_memory_cap_stops_a_huge_allocation() -> None:
    limits = ReadLimits(child_memory_bytes=256 * 1024**2)
    with pytest.raises(InputError, match=r"scan\.dcm needs more than 256 MiB of memory"):
        run_isolated(targets.allocate, 1024**3, path=FILE, limits=limits)
    # Within the cap the same reader works.
    assert run_isolated(targets.allocate, 10 * 1024**2, path=FILE, limits=limits) == 10 * 1024**2


def test_timeout_abandons_a_hanging_reader() -> None:
    limits = ReadLimits(child_timeout_s=0.5)
    with pytest.raises(InputError, match=r"scan\.dcm took longer than 0\.5 s to read"):
        run_isolated(targets.sleep, 30, path=FILE, limits=limits)


def test_a_crashing_decoder_does_not_take_the_app_down() -> None:
    with pytest.raises(InputError, match=r"decoder crashed on it \(SIGABRT\)"):
        run_isolated(targets.abort, path=FILE)
    assert run_isolated(targets.double, 1, path=FILE) == 2  # and the next file still works


def test_deep_recursion_and_reader_bugs_become_input_errors() -> None:
    with pytest.raises(InputError, match="nested too deeply"):
        run_isolated(targets.recurse, 0, path=FILE)
    with pytest.raises(InputError, match="the reader failed unexpectedly"):
        run_isolated(targets.buggy, path=FILE)
