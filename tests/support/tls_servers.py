"""Redis and PostgreSQL of a test's own that speak TLS only (the machine's servers cannot be
restarted with TLS): certificates from ``infra/tls/make-certs.sh``, as ``make certs`` makes
them. Redis listens on a TLS port alone; PostgreSQL's ``pg_hba.conf`` refuses every
connection that is not ``hostssl``, so a client that did not use TLS could not have got in."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.helpers import ROOT
from tests.support.own_redis import free_port, server_binary
from tests.support.own_servers import OwnPostgres

PASSWORD = "tls-test-admin"


def make_certs(directory: Path) -> Path:
    subprocess.run([str(ROOT / "infra" / "tls" / "make-certs.sh"), str(directory)], check=True, capture_output=True)
    return directory


class TlsRedis:
    """``redis-server`` with only a TLS port; clients authenticate with a password (the
    default user's here: this server is the test's), not a client certificate."""

    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alphasaga-tls-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://default:{PASSWORD}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.certs / 'ca.crt'}"

    def start(self, timeout: float = 20.0) -> None:
        c = self.certs
        args = [server_binary(), "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--tls-cert-file", str(c / "server.crt"), "--tls-key-file", str(c / "server.key")]
        args += ["--tls-ca-cert-file", str(c / "ca.crt"), "--tls-auth-clients", "no"]
        args += ["--requirepass", PASSWORD, "--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    said = (self.dir / "server.log").read_text()
                    raise RuntimeError(f"redis-server with TLS did not start: {said}") from None
                time.sleep(0.05)
        client.close()

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsPostgres(OwnPostgres):
    """An own cluster with ``ssl = on`` and ``hostssl`` lines alone in ``pg_hba.conf``."""

    def __init__(self, certs: Path) -> None:
        super().__init__()
        self.certs = certs
        key = self.dir / "server.key"  # the server's own copy: PostgreSQL wants it 0600 and its own
        shutil.copy(certs / "server.key", key)
        shutil.copy(certs / "server.crt", self.dir / "server.crt")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (key, self.dir / "server.crt"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        key.chmod(0o600)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{self.dir / 'server.crt'}'\nssl_key_file = '{key}'\n")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
        )

    @property
    def url(self) -> str:
        return (
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            f"?sslmode=verify-full&sslrootcert={self.certs / 'ca.crt'}"
        )
