"""Who is acting, from where: passed to every service call and written to every audit event."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from clinic_app.domain.permissions import Permission, require
from clinic_app.domain.records import Role


def workstation_name() -> str:
    return socket.gethostname() or "unknown-workstation"


@dataclass(frozen=True)
class Actor:
    """The signed-in user (or the system itself, for start-up work such as migrations)."""

    user_id: int | None
    username: str
    role: Role
    workstation: str

    def require(self, permission: Permission) -> None:
        require(self.role, permission, username=self.username)

    @classmethod
    def system(cls) -> Actor:
        """The app acting on its own behalf (first-run set-up, migrations); role admin."""
        return cls(user_id=None, username="system", role=Role.ADMIN, workstation=workstation_name())
