"""The audit log (``audit_log``): append-only, each record chained to the one before by a
SHA-256 over its content and the previous hash. All SQL over the table is here."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

GENESIS = "0" * 64
# Appends from every replica are serialised, so that each record names its true predecessor.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('alphasaga-audit-log'))"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    prev_hash: str = GENESIS
    hash: str = ""

    def content_hash(self, prev_hash: str) -> str:
        body = json.dumps(
            [
                self.at.astimezone(dt.UTC).isoformat(),
                self.actor,
                self.action,
                self.target,
                self.outcome,
                self.detail,
            ],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
        )
        return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    records: int
    # The first record whose hash or link does not match, with the reason; None: intact.
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _record(row: asyncpg.Record) -> AuditRecord:
    return AuditRecord(
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        detail=dict(row["detail"]),
        seq=row["seq"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


class GroupCommit:
    """Appends from many concurrent callers, written together: records that arrive while a
    batch is being committed go in the next one, in one transaction. Each caller still
    waits until its own record is committed, so nothing is acknowledged unrecorded; the
    log's lock and commit are paid once per batch instead of once per record."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._pending: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, record: AuditRecord) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((record, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.log.append_many([record for record, _ in batch])
            except Exception as exc:  # every caller of the batch learns it, and raises it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


class AuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(self, record: AuditRecord) -> str:
        """Store ``record`` after the newest one; returns its hash."""
        return (await self.append_many([record]))[-1]

    async def append_many(self, records: Sequence[AuditRecord]) -> list[str]:
        """Store ``records`` in order after the newest one, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK)
            prev = await conn.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1") or GENESIS
            rows, hashes = [], []
            for record in records:
                digest = record.content_hash(prev)
                # The pool's jsonb codec encodes the dict: encoding it here too stored a string.
                rows.append((record.at, record.actor, record.action, record.target, record.outcome,
                             record.detail, prev, digest))  # fmt: skip
                hashes.append(digest)
                prev = digest
            await conn.executemany(
                "INSERT INTO audit_log (at, actor, action, target, outcome, detail, prev_hash, hash)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
                rows,
            )
        return hashes

    async def recent(self, limit: int = 100, *, action: str | None = None) -> list[AuditRecord]:
        rows = await self.pool.fetch(
            "SELECT * FROM audit_log WHERE ($2::text IS NULL OR action = $2) ORDER BY seq DESC LIMIT $1",
            limit,
            action,
        )
        return [_record(r) for r in rows]

    async def verify(self, batch: int = 5000) -> Verification:
        """Walk the whole log in order, recomputing every hash and link."""
        prev, count, after = GENESIS, 0, 0
        while True:
            rows = await self.pool.fetch("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, batch)
            for row in rows:
                rec = _record(row)
                count += 1
                if rec.prev_hash != prev:
                    return Verification(count, rec.seq, "it does not name the hash of the record before it")
                if rec.content_hash(prev) != rec.hash:
                    return Verification(count, rec.seq, "its content does not match its hash (edited)")
                prev, after = rec.hash, rec.seq
            if len(rows) < batch:
                return Verification(count)
