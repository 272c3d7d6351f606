"""Artifacts by content hash (SHA-256) in PostgreSQL, linked to the saga step that made
them. Storing the same content twice stores it once; removing a step's artifacts drops
blobs no other step still references."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import asyncpg

from alphasaga_contracts.research import ArtifactRef


class ArtifactNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ArtifactLink:
    saga_id: uuid.UUID
    step: str
    name: str
    ref: ArtifactRef


class ArtifactStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(
        self, saga_id: uuid.UUID, step: str, name: str, kind: str, content: bytes, media_type: str
    ) -> ArtifactRef:
        digest = hashlib.sha256(content).hexdigest()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO artifact_blobs (sha256, media_type, size, content) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (sha256) DO NOTHING",
                digest,
                media_type,
                len(content),
                content,
            )
            await conn.execute(
                "INSERT INTO artifacts (saga_id, step, name, kind, sha256) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (saga_id, step, name) DO UPDATE SET sha256 = excluded.sha256, kind = excluded.kind",
                saga_id,
                step,
                name,
                kind,
                digest,
            )
        return ArtifactRef(sha256=digest, kind=kind, media_type=media_type, size=len(content))

    async def get(self, sha256: str) -> bytes:
        async with self.pool.acquire() as conn:
            content = await conn.fetchval("SELECT content FROM artifact_blobs WHERE sha256 = $1", sha256)
        if content is None:
            raise ArtifactNotFound(f"no artifact with sha256 {sha256}")
        return bytes(content)

    async def list(self, saga_id: uuid.UUID) -> list[ArtifactLink]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT a.saga_id, a.step, a.name, a.kind, a.sha256, b.media_type, b.size"
                " FROM artifacts a JOIN artifact_blobs b USING (sha256)"
                " WHERE a.saga_id = $1 ORDER BY a.created_at, a.name",
                saga_id,
            )
        return [
            ArtifactLink(
                r["saga_id"],
                r["step"],
                r["name"],
                ArtifactRef(sha256=r["sha256"], kind=r["kind"], media_type=r["media_type"], size=r["size"]),
            )
            for r in rows
        ]

    async def remove_step(self, saga_id: uuid.UUID, step: str) -> int:
        """Unlink a step's artifacts and delete blobs nothing references any more.
        Idempotent: removing twice removes nothing the second time."""
        async with self.pool.acquire() as conn, conn.transaction():
            hashes = [
                r["sha256"]
                for r in await conn.fetch(
                    "DELETE FROM artifacts WHERE saga_id = $1 AND step = $2 RETURNING sha256", saga_id, step
                )
            ]
            if hashes:
                await conn.execute(
                    "DELETE FROM artifact_blobs b WHERE b.sha256 = ANY($1::text[])"
                    " AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha256 = b.sha256)",
                    hashes,
                )
        return len(hashes)
