"""A saga's artifacts (code, models, reports, charts), checked against their hashes."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from alphasaga_shared.errors import Corrupt, InvalidRequest, NotFound

from .core import Core

if TYPE_CHECKING:
    from alphasaga_shared.eventstore import ArtifactLink


class Artifacts(Core):
    @staticmethod
    def datasets() -> tuple[str, ...]:
        """The built-in datasets a request may name."""
        from alphasaga_contracts.research import BUILTIN_DATASETS

        return BUILTIN_DATASETS

    async def artifacts(self, saga: str | uuid.UUID) -> list[ArtifactLink]:
        from alphasaga_shared.eventstore import ArtifactStore

        saga_id = await self.resolve(saga)
        return await ArtifactStore((await self.event_store()).pool).list(saga_id)

    async def artifact(self, sha256: str) -> bytes:
        """An artifact's content, checked against its hash."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise InvalidRequest(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)")
        from alphasaga_shared.eventstore import ArtifactNotFound, ArtifactStore

        try:
            content = await ArtifactStore((await self.event_store()).pool).get(sha256)
        except ArtifactNotFound as exc:
            raise NotFound(str(exc)) from None
        if hashlib.sha256(content).hexdigest() != sha256:
            raise Corrupt(f"artifact {sha256} does not match its SHA-256")
        return content

    async def artifact_media_type(self, sha256: str) -> str:
        from alphasaga_shared.eventstore import ArtifactStore

        found = await ArtifactStore((await self.event_store()).pool).media_type(sha256)
        if found is None:
            raise NotFound(f"no artifact with sha256 {sha256}")
        return found
