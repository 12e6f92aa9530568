"""`clinic-app users`: piped passwords, exit statuses, messages, and what lands in the database
and the audit trail (the CLI acts as the "system" administrator)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from clinic_app.cli import main
from clinic_app.config.settings import load_settings
from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.records import Role
from clinic_app.services.database import open_database
from clinic_app.services.users import authenticate
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent

ADMIN_PASSWORD = "correct horse battery"
PASSWORD = "staple kettle orbit lamp"


def run(
    data_dir: Path, *args: str, stdin: str = "", capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run `clinic-app --data-dir DIR users ARGS` in this process with ``stdin`` piped in."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(["--data-dir", str(data_dir), "users", *args])
    finally:
        sys.stdin = saved
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def app_database(data_dir: Path) -> Iterator[Database]:
    """The data folder's own database, for checking what the commands wrote."""
    db = open_database(load_settings(data_dir))
    yield db
    db.dispose()


@pytest.fixture
def with_admin(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, _ = run(
        data_dir, "add", "root", "--role", "admin", "--password-stdin",
        stdin=ADMIN_PASSWORD + "\n", capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    return data_dir


def test_add_on_an_empty_database_creates_the_first_admin(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        data_dir, "add", "Root", "--role", "admin", "--display-name", "Clinic Admin",
        "--password-stdin", stdin=ADMIN_PASSWORD + "\n", capsys=capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.strip() == "Created the first administrator: root (admin, active)."
    db = open_database(load_settings(data_dir))
    try:
        actor = authenticate(db, "root", ADMIN_PASSWORD, "ws")
        assert actor.role is Role.ADMIN
        with db.read() as session:
            first = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).first()
        assert first is not None
        assert (first.event_type, first.username, first.details["first_admin"]) == (
            "user.create",
            "system",
            True,
        )
    finally:
        db.dispose()


def test_full_account_lifecycle(
    with_admin: Path, capsys: pytest.CaptureFixture[str], app_database: Database
) -> None:
    data_dir = with_admin
    code, out, _ = run(
        data_dir, "add", "alice", "--role", "clinician", "--password-stdin",
        stdin=PASSWORD + "\n", capsys=capsys,
    )  # fmt: skip
    assert (code, out.strip()) == (0, "Created user alice (clinician, active).")

    code, out, _ = run(data_dir, "list", capsys=capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "STATUS", "DISPLAY", "NAME"]
    assert lines[1].split() == ["alice", "clinician", "active", "alice"]
    assert lines[2].split() == ["root", "admin", "active", "root"]

    assert run(data_dir, "role", "alice", "reviewer", capsys=capsys)[:2] == (
        0,
        "alice now has the role reviewer.\n",
    )
    code, out, _ = run(data_dir, "disable", "alice", capsys=capsys)
    assert (code, out) == (0, "alice is disabled: the account can no longer sign in.\n")
    with pytest.raises(AccessDenied, match="disabled"):
        authenticate(app_database, "alice", PASSWORD)

    code, out, _ = run(data_dir, "list", "--json", capsys=capsys)
    listed = {entry["username"]: entry for entry in json.loads(out)}
    assert listed["alice"]["role"] == "reviewer"
    assert listed["alice"]["status"] == "disabled" and listed["alice"]["is_active"] is False
    assert "password_hash" not in listed["alice"]

    assert run(data_dir, "enable", "alice", capsys=capsys)[0] == 0
    code, out, _ = run(
        data_dir, "passwd", "alice", "--password-stdin", stdin="a brand new password\n",
        capsys=capsys,
    )  # fmt: skip
    assert (code, out) == (0, "The password of alice is set.\n")
    actor = authenticate(app_database, "alice", "a brand new password")
    assert actor.role is Role.REVIEWER

    with app_database.read() as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)))
    changes = [(e.event_type, e.action, e.username) for e in events if e.event_type != "user.login"]
    assert changes == [
        ("user.create", "C", "system"),
        ("user.create", "C", "system"),
        ("user.update", "U", "system"),
        ("user.disable", "U", "system"),
        ("user.update", "U", "system"),
        ("user.password", "U", "system"),
    ]


def test_password_is_never_an_argument(
    with_admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(with_admin), "users", "add", "bob", "--role", "clinician",
              "--password", PASSWORD])  # fmt: skip
    assert exited.value.code == 2
    assert "unrecognized arguments: --password" in capsys.readouterr().err


def test_without_a_terminal_the_password_must_be_piped_explicitly(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(data_dir, "add", "bob", "--role", "admin", stdin=PASSWORD, capsys=capsys)
    assert (code, out) == (65, "")
    assert err.strip() == (
        "clinic-app: There is no terminal to ask for the password on. "
        "Pipe it as one line with --password-stdin."
    )


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "No password arrived on standard input."),
        ("short\n", "The password is too short: use at least 12 characters."),
        ("Bob.The.Builder\n", "The password must not be the user name."),
    ],
)
def test_bad_piped_passwords_exit_65_with_the_reason(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stdin: str, message: str
) -> None:
    code, out, err = run(
        data_dir, "add", "bob.the.builder", "--role", "admin", "--password-stdin", stdin=stdin,
        capsys=capsys,
    )  # fmt: skip
    assert (code, out) == (65, "")
    assert err.startswith(f"clinic-app: {message}")
    assert "Traceback" not in err


def test_only_the_line_ending_is_stripped(
    data_dir: Path, capsys: pytest.CaptureFixture[str], app_database: Database
) -> None:
    spaced = "  spaces count too  "
    code, _, err = run(
        data_dir, "add", "root", "--role", "admin", "--password-stdin", stdin=spaced + "\r\n",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    authenticate(app_database, "root", spaced)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("disable", "ghost"), 65, "clinic-app: There is no user named 'ghost'."),
        (("passwd", "ghost", "--password-stdin"), 65, "There is no user named 'ghost'."),
        (("disable", "root"), 65, "'root' is the only active administrator"),
        (("role", "root", "clinician"), 65, "'root' is the only active administrator"),
        (("add", "root", "--role", "admin", "--password-stdin"), 65, "'root' is taken already"),
        (("add", "bad name", "--role", "admin", "--password-stdin"), 65, "is not valid"),
    ],
)
def test_refusals_exit_with_a_sentence(
    with_admin: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    status, out, err = run(with_admin, *args, stdin=PASSWORD + "\n", capsys=capsys)
    assert (status, out) == (code, "")
    assert message in err and err.startswith("clinic-app: ")
    assert "Traceback" not in err


def test_unknown_role_is_a_usage_error(
    with_admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(with_admin), "users", "role", "root", "superuser"])
    assert exited.value.code == 2
    assert "invalid choice: 'superuser'" in capsys.readouterr().err


def test_empty_list_says_how_to_start(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(data_dir, "list", capsys=capsys)
    assert code == 0
    assert "clinic-app users add NAME --role admin" in out
    assert run(data_dir, "list", "--json", capsys=capsys)[1].strip() == "[]"


def test_help_says_the_cli_acts_as_the_administrator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["users", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "act as the system administrator" in text
    assert "owns the data folder" in text
    assert "--password-stdin" in text


def test_piping_into_the_installed_command(data_dir: Path) -> None:
    """A real child process, as a provisioning script would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "clinic_app", "--data-dir", str(data_dir), "users", "add",
         "root", "--role", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n", capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "first administrator: root" in result.stdout
    assert ADMIN_PASSWORD not in result.stdout + result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize(
    ("second", "status", "expected"),
    [(ADMIN_PASSWORD, 0, "Created the first administrator"), ("typo", 65, "passwords differ")],
)
def test_on_a_terminal_the_password_is_asked_twice_without_echo(
    data_dir: Path, second: str, status: int, expected: str
) -> None:
    """A real pseudo-terminal as the child's controlling terminal, so getpass reads from it."""
    import pty
    import select as poll
    import signal
    import time

    argv = [sys.executable, "-m", "clinic_app", "--data-dir", str(data_dir), "users", "add",
            "root", "--role", "admin"]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        try:
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    transcript = b""
    answers = [ADMIN_PASSWORD, second]
    answered = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = poll.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            transcript += chunk
            # Answer each prompt once, after it appears: getpass turns echo off before it
            # prompts and discards what was typed earlier.
            if answered < len(answers) and transcript.count(b"password: ") > answered:
                os.write(fd, answers[answered].encode() + b"\n")
                answered += 1
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
        os.close(fd)
    text = transcript.decode(errors="replace")
    assert os.waitstatus_to_exitcode(wait_status) == status, text
    assert "New password:" in text and "Repeat the new password:" in text
    assert expected in text
    assert ADMIN_PASSWORD not in text  # getpass turned echo off
