"""Functions the sandbox tests run in a child process (importable by name, as it requires)."""

from __future__ import annotations

import os
import time

from clinic_app.domain.errors import InputError


def double(value: int) -> int:
    return value * 2


def allocate(count: int) -> int:
    return len(bytearray(count))


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def abort() -> None:
    os.abort()


def refuse() -> None:
    raise InputError("scan.dcm: truncated pixel data: 8,130 of 8,192 bytes", hint="Re-export it.")


def recurse(depth: int) -> int:
    return recurse(depth + 1)


def buggy() -> None:
    raise KeyError("a reader bug")
