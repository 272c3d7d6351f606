"""The logins compose runs with (`make compose-secrets`; issue #30), in ``.secrets/``
(git-ignored, never committed; passwords kept across runs):

- ``redis/users.acl``: the rendered ACL file (``alphasaga acl render``), which Redis loads;
- ``roles/<login>``: each PostgreSQL role's password, for the ``migrate`` one-shot;
- ``env/<login>.env``: each service's ``ALPHASAGA_REDIS_URL`` and ``ALPHASAGA_DATABASE_URL``;
- ``host.env``: the front ends' login from the host (the CLI), on the published ports.

With ``--tls`` the URLs are ``rediss://`` and ``sslmode=verify-full`` (compose's TLS
variant, ``docker-compose.tls.yml``), and each server gets a copy of the certificates of
``make certs`` owned by the uid it runs as (``REDIS_UID``, ``POSTGRES_UID``: 999 in the
official images, 100 in those of ``make infra-images``), as the servers require.

    python infra/compose_secrets.py [--tls] [--certs .tls] [--out .secrets]

``--out`` is for the container test, which makes a run's own beside its certificates and
mounts them where compose names ``./.secrets``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from alphasaga_cli.principals import database_role_names, password_files, redis_user_names
from alphasaga_contracts import DEFAULT_NAMESPACE
from alphasaga_shared.acl import render

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ROOT / ".secrets"
CA = "/tls/ca.crt"  # where the services' containers find the CA (docker-compose.tls.yml)


def urls(
    login: str, redis_pw: str, role_pw: str, *, tls: bool, host: str | None = None, host_ca: Path = ROOT / ".tls"
) -> dict[str, str]:
    redis_host = f"{host}:${{REDIS_PORT:-6379}}" if host else "redis:6379"
    pg_host = f"{host}:${{POSTGRES_PORT:-5432}}" if host else "postgres:5432"
    ca = str(host_ca / "ca.crt") if host else CA
    redis = f"redis{'s' if tls else ''}://alphasaga-{login}:{redis_pw}@{redis_host}/0"
    database = f"postgresql://alphasaga_{login}:{role_pw}@{pg_host}/alphasaga"
    if tls:
        redis += f"?ssl_ca_certs={ca}"
        database += f"?sslmode=verify-full&sslrootcert={ca}"
    return {"ALPHASAGA_REDIS_URL": redis, "ALPHASAGA_DATABASE_URL": database}


def write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def server_copies(certs: Path, secrets: Path) -> None:
    """Each server's copy of the certificates, its own (its key must not be others')."""
    for server, default_uid in (("redis", "999"), ("postgres", "999")):
        uid = int(os.environ.get(f"{server.upper()}_UID", default_uid))
        own = secrets / f"tls-{server}"
        own.mkdir(parents=True, exist_ok=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(certs / name, own / name)
            (own / name).chmod(0o600 if name == "server.key" else 0o644)
            os.chown(own / name, uid, uid)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls", action="store_true", help="rediss:// and verify-full URLs; the servers' copies")
    parser.add_argument("--certs", type=Path, default=ROOT / ".tls", help="where `make certs` wrote them")
    parser.add_argument("--out", type=Path, default=SECRETS, help="where to write (compose's ./.secrets)")
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.tls and not (args.certs / "server.key").exists():
        print(f"no certificates in {args.certs}: run `make certs` first", file=sys.stderr)
        return 2
    out.mkdir(exist_ok=True)
    out.chmod(0o700)
    redis_pw = password_files(out / "passwords" / "redis", redis_user_names(DEFAULT_NAMESPACE))
    role_pw = password_files(out / "roles", database_role_names())
    # Read by the servers' and the one-shot's own uids through their mounts: the files hold
    # password hashes (users.acl) and the roles' passwords, under the 0700 .secrets/.
    (out / "roles").chmod(0o755)
    for name in role_pw:
        (out / "roles" / name).chmod(0o644)
    acl = render(DEFAULT_NAMESPACE, redis_pw, anonymous_ping=True)
    write(out / "redis" / "users.acl", acl, 0o644)
    (out / "redis").chmod(0o755)
    for login in role_pw:
        env = urls(login, redis_pw[login], role_pw[login], tls=args.tls)
        write(out / "env" / f"{login}.env", "".join(f"{k}={v}\n" for k, v in env.items()), 0o600)
    host = urls("api", redis_pw["api"], role_pw["api"], tls=args.tls, host="127.0.0.1", host_ca=args.certs.resolve())
    write(out / "host.env", "".join(f'export {k}="{v}"\n' for k, v in host.items()), 0o600)
    if args.tls:
        server_copies(args.certs, out)
    print(f"wrote {out}/ ({'TLS' if args.tls else 'plain'} URLs); the CLI: . {out}/host.env")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
