"""The audit trail as the console shows it: newest first, filtered by admin key id, action
and target, paged back through the stream a bounded number of entries at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.admin.actions import AdminActions
from gateway.store import AuditEntry

AUDIT_ACTIONS: Final = (
    "revoke_token",
    "revoke_session",
    "revoke_user",
    "revoke_client",
    "console_sign_in",
    "console_sign_out",
)
PAGE: Final = 50  # matching entries per page
BATCH: Final = 200  # entries read per round trip
SCAN_LIMIT: Final = 5000  # entries examined per page at most (then "older" continues)
MAX_FILTER: Final = 256


@dataclass(frozen=True, slots=True)
class AuditFilter:
    key: str = ""  # admin key id (actor `admin-key:<id>`), or a whole actor such as cli:…
    action: str = ""
    target: str = ""  # substring of the target (a sub, sid or jti)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> AuditFilter:
        def value(name: str) -> str:
            return query.get(name, "").strip()[:MAX_FILTER]

        action = value("action")
        return cls(
            key=value("key"),
            action=action if action in AUDIT_ACTIONS else "",
            target=value("target"),
        )

    def as_query(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("key", self.key), ("action", self.action), ("target", self.target))
            if v
        }

    def matches(self, entry: AuditEntry) -> bool:
        if self.key and entry.actor not in (f"admin-key:{self.key}", self.key):
            return False
        if self.action and entry.action != self.action:
            return False
        return not self.target or self.target in entry.target


async def filtered_audit(
    actions: AdminActions, filters: AuditFilter, before: str | None
) -> tuple[list[AuditEntry], str | None]:
    """Up to PAGE matching entries older than `before`, and where the next page starts
    (None when the trail has no older entries)."""
    found: list[AuditEntry] = []
    scanned = 0
    cursor = before
    while len(found) < PAGE and scanned < SCAN_LIMIT:
        batch = await actions.audit_entries(BATCH, cursor)
        for entry in batch:
            scanned += 1
            cursor = entry.id
            if filters.matches(entry):
                found.append(entry)
                if len(found) == PAGE:
                    break
        if len(batch) < BATCH and (not batch or cursor == batch[-1].id):
            return found, None  # the oldest entry was reached
    return found, cursor
