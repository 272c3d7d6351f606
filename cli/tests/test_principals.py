"""The local stack's logins (issue #30): URLs that keep everything but the login, and
passwords made once and kept."""

from __future__ import annotations

import stat
from pathlib import Path

from alphasaga_cli.principals import password_files, with_login


def test_a_login_replaces_the_urls_own_and_keeps_host_database_and_tls_settings() -> None:
    assert (
        with_login("rediss://default:old@redis:6380/2?ssl_ca_certs=/ca.crt", "alphasaga-ml", "p/w")
        == "rediss://alphasaga-ml:p%2Fw@redis:6380/2?ssl_ca_certs=/ca.crt"
    )
    assert (
        with_login("postgresql://postgres@db:5432/x?sslmode=verify-full&sslrootcert=/c", "s_api", "pw")
        == "postgresql://s_api:pw@db:5432/x?sslmode=verify-full&sslrootcert=/c"
    )
    # embedded PostgreSQL's URL: a Unix socket in the query, no host
    assert (
        with_login("postgresql://postgres:@/postgres?host=/tmp/pg", "r", "pw")
        == "postgresql://r:pw@/postgres?host=/tmp/pg"
    )


def test_passwords_are_made_once_readable_by_their_owner_alone_and_kept(tmp_path: Path) -> None:
    first = password_files(tmp_path / "secrets", ["ml", "api"])
    assert len(set(first.values())) == 2 and all(len(p) >= 24 for p in first.values())
    for name in first:
        assert stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert password_files(tmp_path / "secrets", ["ml", "api"]) == first
