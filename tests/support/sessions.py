"""A process's PostgreSQL sessions, found from its TCP sockets (Linux ``/proc``), and cut
as a failover, a restart or an idle-session killer would cut them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg


def local_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def terminate_sessions_of(database_url: str, pid: int) -> int:
    """``pg_terminate_backend`` on every session of process ``pid``; returns how many."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE (client_port = ANY($1::int[]) OR application_name LIKE '% pid=' || $2::text)"
            " AND pid <> pg_backend_pid()",
            sorted(local_ports(pid)),
            str(pid),
        )
    finally:
        await conn.close()
    return sum(1 for r in rows if r[0])


async def terminate_lock_holder(database_url: str, lock_key: str) -> int | None:
    """End the session holding the advisory lock ``lock_key`` (as ``EventStore.lock_key``
    names it); returns that session's backend pid, or None when nobody holds it."""
    conn = await asyncpg.connect(database_url)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint",
            lock_key,
        )
        if pid is not None:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    return int(pid) if pid is not None else None


async def running_transactions_ended(pool: asyncpg.Pool) -> None:
    """Wait until the transactions running now, anywhere on the server, have ended: log
    readers hold back the rows behind any of them (snapshots are server-wide, and other
    tests run beside this one)."""
    async with pool.acquire() as conn:
        horizon = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        while await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint") < horizon:
            await asyncio.sleep(0.02)
