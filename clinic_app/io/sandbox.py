"""Parse untrusted files in a child process with a memory cap and a timeout.

A file from outside may be crafted or simply broken: a decoder may allocate gigabytes, loop
forever or crash in C code. The reader therefore runs in a child process whose address space is
capped (``RLIMIT_AS``, 2 GiB by default) and which is killed after a timeout (10 s by default).
Whatever happens there, the app gets back either the reader's result or one ``InputError``
naming the file and a reason a person can act on.

Children are forked from a *fork server* (``multiprocessing`` "forkserver" context) that has
already imported the readers, so a parse starts in milliseconds and never inherits the app's
threads, Qt state or database connections. Where fork is not available (Windows, and macOS
where fork is unsafe), "spawn" is used; Windows has no ``RLIMIT_AS``, so there only the timeout
applies (documented in the README).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from clinic_app.domain.errors import InputError
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Modules the fork server imports once, so that each child starts with them loaded
#: (a missing optional one is skipped by multiprocessing).
PRELOAD = (
    "clinic_app.io.readers",
    "clinic_app.io.dicom_images",
    "clinic_app.io.slides",
    "clinic_app.io.ecg_wfdb",
    "clinic_app.io.ecg_dicom",
    "clinic_app.io.notes",
    "clinic_app.io.deid.copies",
)

_context_lock = threading.Lock()
_context: Any = None


@dataclass(frozen=True, slots=True)
class ChildReport:
    """What the child said about itself: peak resident memory and time spent."""

    peak_rss_bytes: int
    seconds: float


def _get_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            methods = multiprocessing.get_all_start_methods()
            if sys.platform.startswith("linux") and "forkserver" in methods:
                server = multiprocessing.get_context("forkserver")
                server.set_forkserver_preload(list(PRELOAD))
                _context = server
            else:
                _context = multiprocessing.get_context("spawn")
        return _context


def _address_space_in_use() -> int:
    """Bytes of address space this process already maps (the preloaded libraries)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cap_memory(limit_bytes: int) -> None:
    """Allow ``limit_bytes`` of address space beyond what the loaded readers already map.

    Counting from the current size keeps the cap meaningful on machines where libraries
    reserve much address space up front (thread arenas of numerical libraries on many cores).
    """
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the timeout still applies
        return
    cap = _address_space_in_use() + limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    # A crash must not leave a core file of patient data behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _quiet() -> None:
    """Libraries warn on stderr about every oddity of a damaged file (and C decoders print
    there directly); the child's verdict travels through the pipe, so its stderr is dropped."""
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _child_main(
    connection: Connection,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    memory_bytes: int,
) -> None:
    """Run ``function(*args)`` under the memory cap and send ("ok"|"input"|"memory"|"bug", ...)."""
    started = time.perf_counter()
    _cap_memory(memory_bytes)
    _quiet()
    try:
        result = function(*args)
        outcome: tuple[str, Any] = ("ok", result)
    except InputError as exc:
        outcome = ("input", (exc.message, exc.hint))
    except MemoryError:
        outcome = ("memory", None)
    except RecursionError:
        outcome = ("input", ("its structure is nested too deeply to read", None))
    except BaseException:
        outcome = ("bug", traceback.format_exc(limit=20))
    report = ChildReport(_peak_rss_bytes(), time.perf_counter() - started)
    try:
        connection.send((*outcome, report))
    except MemoryError:
        connection.send(("memory", None, report))
    except Exception:
        connection.send(("bug", traceback.format_exc(limit=5), report))
    finally:
        connection.close()


def _size_text(count: int) -> str:
    gib = count / 1024**3
    return f"{gib:g} GiB" if gib >= 1 else f"{count / 1024**2:,.0f} MiB"


def run_isolated(
    function: Callable[..., T],
    *args: Any,
    path: Path,
    limits: ReadLimits = DEFAULT_LIMITS,
    report: list[ChildReport] | None = None,
) -> T:
    """``function(*args)`` in a capped child process; its result, or one InputError for ``path``.

    ``function`` must be importable by name (a module-level function) and its result picklable.
    ``report``, when given, receives the child's peak memory and run time.
    """
    ctx = _get_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        args=(sender, function, args, limits.child_memory_bytes),
        name=f"clinicfusion-parse-{path.name[:40]}",
        daemon=True,
    )
    name = path.name
    try:
        process.start()
    except OSError as exc:  # fork refused: out of processes or memory on this machine
        raise InputError(
            f"{name} could not be read: no process could be started to read it ({exc})."
        ) from exc
    sender.close()
    try:
        if not receiver.poll(limits.child_timeout_s) and process.is_alive():
            raise InputError(
                f"{name} took longer than {limits.child_timeout_s:g} s to read and was "
                "abandoned: the file may be damaged or far larger than it should be.",
                hint="Check the file on the device that made it, or raise the read timeout.",
            )
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            process.join(2)
            raise InputError(_death_message(name, process.exitcode, limits)) from None
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
        if hasattr(process, "close") and process.exitcode is not None:
            process.close()
    kind, payload, child_report = message
    if report is not None:
        report.append(child_report)
    if kind == "ok":
        return payload  # type: ignore[no-any-return]
    if kind == "input":
        text, hint = payload
        raise InputError(text, hint=hint)
    if kind == "memory":
        raise InputError(
            f"{name} needs more than {_size_text(limits.child_memory_bytes)} of memory to read, "
            "so it was not read: it may be damaged, or larger than this workstation can handle."
        )
    log.error("Reader bug on %s:\n%s", name, payload)
    raise InputError(
        f"{name} could not be read: the reader failed unexpectedly (details are in the log).",
        hint="Please report this file to the ClinicFusion team if it opens in other software.",
    )


def _death_message(name: str, exitcode: int | None, limits: ReadLimits) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            which = signal.Signals(-exitcode).name
        except ValueError:
            which = f"signal {-exitcode}"
        if which in ("SIGKILL", "SIGSEGV", "SIGBUS", "SIGABRT"):
            return (
                f"{name} could not be read: the decoder crashed on it ({which}); the file is "
                f"probably damaged, or needs more than {_size_text(limits.child_memory_bytes)}."
            )
        return f"{name} could not be read: the reader was stopped ({which})."
    return f"{name} could not be read: the reader ended without an answer (exit {exitcode})."


def isolation_available() -> bool:
    """True where the memory cap applies (POSIX); Windows has the timeout only."""
    return os.name == "posix"
