"""Least privilege in Redis (issue #30): the users ``alphasaga acl render`` makes, loaded
into the real Redis under names of this test's own (``ACL SETUSER``, deleted afterwards).

The forgery table states the policy from the contract (``KINDS``, ``Streams``), not from
``alphasaga_shared.acl``: for every stream of every kind, each user's XADD, XREADGROUP,
XRANGE and deletions are tried for real, and each must succeed exactly where the policy
says and fail with NOPERM everywhere else. A new step kind adds its rows by itself.
Commands that would harm the shared server if wrongly allowed (FLUSHDB, CONFIG SET…) are
asked of ``ACL DRYRUN`` instead of run. The last tests run each service's own code (the
bus, the relay's sentinel, the API's rate limiter, the front ends' reads) under its user,
and require Redis's ACL log to hold no denial for any of them."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from alphasaga_contracts import Service, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.steps import KINDS
from alphasaga_shared import acl
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import encode, envelope_for
from conftest import Servers
from tests.support.helpers import eventually

ORCHESTRATOR = Service.ORCHESTRATOR.value
WORKERS = [w.value for w in KINDS.services()]
USERS = [ORCHESTRATOR, *WORKERS, acl.FRONT_END, acl.KEDA]


# --- the policy, from the contract ----------------------------------------------------------


def lanes(*streams: str) -> set[str]:
    """Each stream with its express lane."""
    return {lane for s in streams for lane in Streams.lanes(s)}


def every_stream(streams: Streams) -> list[str]:
    base = [
        *lanes(streams.commands(ORCHESTRATOR)),
        *lanes(*(streams.commands(q) for q in KINDS.queues())),
        streams.events(ORCHESTRATOR),
        *lanes(*(streams.events(w) for w in WORKERS)),
        streams.sagas,
    ]
    return base + [streams.dead_letters(s) for s in base]


def may_consume(streams: Streams, user: str) -> set[str]:
    if user in (acl.FRONT_END, acl.KEDA):
        return set()
    if user == ORCHESTRATOR:
        # its own event stream: a campaign's child's end, which nobody else may write
        return {
            *lanes(streams.commands(ORCHESTRATOR), *(streams.events(w) for w in WORKERS)),
            streams.events(ORCHESTRATOR),
        }
    return lanes(*(streams.commands(q) for q in KINDS.queues(user)))


def may_add(streams: Streams, user: str) -> set[str]:
    if user == acl.FRONT_END:
        return lanes(streams.commands(ORCHESTRATOR))
    if user == acl.KEDA:
        return set()
    dead = {streams.dead_letters(s) for s in may_consume(streams, user)}
    if user == ORCHESTRATOR:  # the workers' commands, the sagas' events; the relay publishes starts
        queues = lanes(*(streams.commands(q) for q in KINDS.queues()))
        return {*queues, streams.sagas, *lanes(streams.commands(ORCHESTRATOR)), streams.events(ORCHESTRATOR), *dead}
    return {*lanes(streams.events(user)), *dead}


def may_read(streams: Streams, user: str) -> set[str]:
    """Read without a group (XRANGE): the front ends follow the sagas and show dead letters."""
    if user == acl.FRONT_END:
        return {streams.sagas, *(s for s in every_stream(streams) if s.endswith(":dlq"))}
    return set()


def may_delete_entries(streams: Streams, user: str) -> set[str]:
    """XDEL: the API's admin routes delete dead letters; nobody deletes anything else."""
    return {s for s in may_read(streams, user) if s.endswith(":dlq")}


# Never for anyone but admin; asked of ACL DRYRUN (running them could harm the shared server).
DANGEROUS = [
    ["FLUSHDB"],
    ["FLUSHALL"],
    ["CONFIG", "GET", "*"],
    ["CONFIG", "SET", "appendonly", "no"],
    ["KEYS", "*"],
    ["DEBUG", "SLEEP", "0"],
    ["SHUTDOWN", "NOSAVE"],
    ["ACL", "SETUSER", "intruder", "on", "+@all"],
    ["EVAL", "return 1", "0"],
    ["FUNCTION", "FLUSH"],
    ["SCRIPT", "FLUSH"],
    ["CLIENT", "KILL", "ID", "1"],
    ["CLIENT", "LIST"],
    ["MONITOR"],
    ["REPLICAOF", "127.0.0.1", "1"],
    ["SAVE"],
    ["SWAPDB", "0", "1"],
    ["PUBLISH", "channel", "x"],
    ["SET", "someone-else:key", "x"],
    ["GET", "someone-else:key"],
]


# --- the users, loaded for one test -----------------------------------------------------------


def user_url(redis_url: str, name: str, password: str) -> str:
    parts = urlsplit(redis_url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{name}:{password}@{host}{port}{parts.path}"


class Users:
    """This test's users: ``<namespace>-<name>``, each with a random password and a client."""

    def __init__(self, admin: aioredis.Redis, servers: Servers, namespace: str) -> None:
        self.admin, self.servers, self.namespace = admin, servers, namespace
        self.urls: dict[str, str] = {}
        self.clients: dict[str, aioredis.Redis] = {}

    def name(self, user: str) -> str:
        return f"{self.namespace}-{user}"

    async def load(self) -> None:
        for user in acl.users(self.namespace):
            password = uuid.uuid4().hex
            await self.admin.execute_command(
                "ACL", "SETUSER", self.name(user.name), "reset", "on", f">{password}", *user.rules().split()
            )
            self.urls[user.name] = user_url(self.servers.redis_url, self.name(user.name), password)
            self.clients[user.name] = aioredis.from_url(self.urls[user.name])

    async def unload(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        if self.urls:
            await self.admin.execute_command("ACL", "DELUSER", *(self.name(u) for u in self.urls))

    async def denials(self) -> list[str]:
        """What Redis refused any of them, from its ACL log (CLIENT SETINFO aside: redis-py
        sends it on connect and ignores the refusal; Redis 7.0 does not even know it)."""
        entries: Any = await self.admin.execute_command("ACL", "LOG")
        found = []
        for entry in entries:
            e = {(k.decode() if isinstance(k, bytes) else k): v for k, v in _pairs(entry)}
            who = _text(e.get("username"))
            if who.startswith(f"{self.namespace}-") and _text(e.get("object")) != "client|setinfo":
                found.append(f"{who}: {_text(e.get('reason'))} {_text(e.get('object'))}")
        return found


def _pairs(entry: Any) -> list[tuple[Any, Any]]:
    if isinstance(entry, dict):
        return list(entry.items())
    return list(zip(entry[::2], entry[1::2], strict=True))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture
async def users(redis: aioredis.Redis, servers: Servers, namespace: str) -> AsyncIterator[Users]:
    found = Users(redis, servers, namespace)
    try:
        await found.load()
        yield found
    finally:
        await found.unload()


async def outcome(call: Callable[[], Awaitable[Any]]) -> str:
    try:
        await call()
    except NoPermissionError:
        return "NOPERM"
    except ResponseError as exc:
        return f"error: {exc}"
    return "ok"


def forged() -> dict[str, str]:
    saga_id = uuid.uuid4()
    return encode(envelope_for(sg.SagaCompleted(saga_id=saga_id, outputs={}), correlation_id=str(saga_id)))


# --- the forgery table ------------------------------------------------------------------------


@pytest.mark.parametrize("user", USERS)
async def test_every_stream_operation_outside_a_users_rights_fails_with_noperm(
    user: str, users: Users, redis: aioredis.Redis, namespace: str
) -> None:
    streams = Streams(namespace)
    for stream in every_stream(streams):
        await redis.xgroup_create(stream, "g", id="0", mkstream=True)
        await redis.xadd(stream, {"seed": "1"})
    client = users.clients[user]
    rows: list[tuple[str, set[str], Callable[[str], Awaitable[Any]]]] = [
        ("XADD", may_add(streams, user), lambda s: client.xadd(s, forged())),  # type: ignore[arg-type]
        ("XREADGROUP", may_consume(streams, user), lambda s: client.xreadgroup("g", "c", {s: ">"}, count=1)),
        ("XACK", may_consume(streams, user), lambda s: client.xack(s, "g", "0-1")),
        ("XAUTOCLAIM", may_consume(streams, user), lambda s: client.xautoclaim(s, "g", "c", 0)),
        ("XRANGE", may_read(streams, user), lambda s: client.xrange(s, count=1)),
        ("XDEL", may_delete_entries(streams, user), lambda s: client.xdel(s, "0-1")),
        ("XTRIM", set(), lambda s: client.xtrim(s, maxlen=1000)),
        ("DEL", set(), lambda s: client.delete(s)),
        ("XGROUP DESTROY", set(), lambda s: client.xgroup_destroy(s, "g")),
        ("XGROUP SETID", set(), lambda s: client.xgroup_setid(s, "g", "$")),
    ]
    wrong = []
    tried = 0
    for operation, allowed, call in rows:
        for stream in every_stream(streams):
            expected = "ok" if stream in allowed else "NOPERM"
            got = await outcome(lambda c=call, s=stream: c(s))  # type: ignore[misc]
            tried += 1
            if got != expected:
                wrong.append(f"{user} {operation} {stream}: {got}, not {expected}")
    assert not wrong, "\n".join(wrong)
    assert tried == len(rows) * len(every_stream(streams))


def may_scale_on(streams: Streams, user: str) -> set[str]:
    """What KEDA's redis-streams scaler reads (XINFO GROUPS, XPENDING, XLEN): the workers'
    command streams, each lane."""
    return lanes(*(streams.commands(q) for q in KINDS.queues())) if user == acl.KEDA else set()


async def test_keda_reads_the_workers_groups_and_nothing_else(
    users: Users, redis: aioredis.Redis, namespace: str
) -> None:
    """The autoscaler's three reads on every stream: allowed on the workers' command streams
    (both lanes), refused elsewhere; it can neither read entries nor add any (the table above)."""
    streams = Streams(namespace)
    for stream in every_stream(streams):
        await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    keda = users.clients[acl.KEDA]
    wrong = []
    for stream in every_stream(streams):
        expected = "ok" if stream in may_scale_on(streams, acl.KEDA) else "NOPERM"
        for name, call in (
            ("XINFO GROUPS", lambda s=stream: keda.xinfo_groups(s)),
            ("XPENDING", lambda s=stream: keda.xpending(s, "g")),
            ("XLEN", lambda s=stream: keda.xlen(s)),
        ):
            got = await outcome(call)  # type: ignore[arg-type]
            if got != expected:
                wrong.append(f"keda {name} {stream}: {got}, not {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("user", USERS)
async def test_no_one_but_admin_may_flush_configure_list_keys_or_debug(user: str, users: Users) -> None:
    allowed = []
    for command in DANGEROUS:
        for who in (user, acl.ADMIN):
            reply = _text(await users.admin.execute_command("ACL", "DRYRUN", users.name(who), *command))
            if (reply == "OK") != (who == acl.ADMIN):
                allowed.append(f"{who}: {' '.join(command)} -> {reply}")
    assert not allowed, "\n".join(allowed)


async def test_the_issues_forgeries_fail(users: Users, namespace: str) -> None:
    """The four of issue #30, by name: a worker adding a SagaCompleted to the sagas stream,
    a worker answering another's commands or reading its stream, the API adding a reply."""
    streams = Streams(namespace)
    codegen, api = users.clients["codegen"], users.clients[acl.FRONT_END]
    assert await outcome(lambda: codegen.xadd(streams.sagas, forged())) == "NOPERM"  # type: ignore[arg-type]
    assert await outcome(lambda: codegen.xadd(streams.events("ml"), forged())) == "NOPERM"  # type: ignore[arg-type]
    assert await outcome(lambda: codegen.xreadgroup("ml", "c", {streams.commands("ml"): ">"})) == "NOPERM"
    assert await outcome(lambda: api.xadd(streams.events("reasoning"), forged())) == "NOPERM"  # type: ignore[arg-type]
    # nor can anyone but the orchestrator tell a campaign that a child ended (issue #25)
    for who in (api, codegen):
        assert await outcome(lambda w=who: w.xadd(streams.events(ORCHESTRATOR), forged())) == "NOPERM"  # type: ignore[misc]
    # and what they may do, they can: the same clients are not simply refused everything
    assert await outcome(lambda: codegen.xadd(streams.events("codegen"), forged())) == "ok"  # type: ignore[arg-type]
    assert await outcome(lambda: api.xadd(streams.commands(ORCHESTRATOR), forged())) == "ok"  # type: ignore[arg-type]


async def test_a_namespace_with_glob_characters_grants_its_own_keys_only(redis: aioredis.Redis, namespace: str) -> None:
    """A namespace may hold ``*``: its patterns are escaped, or ``t*`` would grant ``tX``'s."""
    glob_namespace, name = f"{namespace}*", f"{namespace}-glob"
    (ml,) = (u for u in acl.users(glob_namespace) if u.name == "ml")
    await redis.execute_command("ACL", "SETUSER", name, "reset", "on", f">{uuid.uuid4().hex}", *ml.rules().split())
    try:
        ours = await redis.execute_command("ACL", "DRYRUN", name, "XADD", f"{glob_namespace}:evt:ml", "*", "a", "b")
        theirs = await redis.execute_command("ACL", "DRYRUN", name, "XADD", f"{namespace}X:evt:ml", "*", "a", "b")
    finally:
        await redis.execute_command("ACL", "DELUSER", name)
    assert _text(ours) == "OK"
    assert "no permissions" in _text(theirs)


# --- each service's own code under its user ----------------------------------------------------


def as_user(settings: Settings, users: Users, user: str) -> Settings:
    return settings.model_copy(update={"redis_url": users.urls[user], "consumer": f"{user}-{uuid.uuid4().hex[:6]}"})


def cancel() -> dict[str, str]:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason="acl test")
    return encode(envelope_for(msg, correlation_id=str(msg.saga_id)))


async def test_every_service_runs_its_bus_on_its_own_user(
    settings: Settings, users: Users, redis: aioredis.Redis, namespace: str
) -> None:
    """A start from the front end reaches the orchestrator, which commands every queue and
    tells the sagas stream; each worker replies; a malformed entry on each stream is
    dead-lettered by its reader. All of it through the real bus, each on its own user."""
    from alphasaga_shared.bus import Bus
    from alphasaga_shared.wire import Delivery, Envelope, Outgoing

    streams = Streams(namespace)
    replies: list[str] = []

    async def orchestrate(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        if d.stream != streams.commands(ORCHESTRATOR):
            replies.append(d.stream)
            return []
        return [Outgoing(streams.commands(q), env) for q in KINDS.queues()] + [Outgoing(streams.sagas, env)]

    def replying(worker: str) -> Callable[[Envelope, Delivery], Awaitable[Sequence[Outgoing]]]:
        async def reply(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
            return [Outgoing(streams.events(worker), env)]

        return reply

    buses = [Bus(as_user(settings, users, ORCHESTRATOR), service=ORCHESTRATOR)]
    buses[0].subscribe(streams.commands(ORCHESTRATOR), orchestrate)
    for worker in WORKERS:
        buses[0].subscribe(streams.events(worker), orchestrate)
        for queue in KINDS.queues(worker):
            buses[0].watch(streams.commands(queue), worker)
        bus = Bus(as_user(settings, users, worker), service=worker)
        for queue in KINDS.queues(worker):
            bus.subscribe(streams.commands(queue), replying(worker), dedupe=True)
        buses.append(bus)
    for bus in buses:
        await bus.start()
    try:
        # malformed entries, each written by a user that may write there
        await users.clients[acl.FRONT_END].xadd(streams.commands(ORCHESTRATOR), {"garbage": "1"})
        for worker in WORKERS:
            await users.clients[worker].xadd(streams.events(worker), {"garbage": "1"})
        for queue in KINDS.queues():
            await users.clients[ORCHESTRATOR].xadd(streams.commands(queue), {"garbage": "1"})
        await users.clients[acl.FRONT_END].xadd(streams.commands(ORCHESTRATOR), cancel())  # type: ignore[arg-type]
        served_by = {k.queue: k.service for k in KINDS}  # each queue's command, answered by its service
        expected = sorted(streams.events(service) for service in served_by.values())
        await eventually(lambda: _value(len(replies) >= len(expected)), timeout=30)
        consumed = [streams.commands(ORCHESTRATOR), *(streams.events(w) for w in WORKERS)]
        consumed += [streams.commands(q) for q in KINDS.queues()]
        for stream in consumed:
            await eventually(lambda s=stream: redis.xlen(streams.dead_letters(s)), timeout=30)  # type: ignore[misc]
    finally:
        for bus in buses:
            await bus.stop()
    assert sorted(replies) == expected
    assert await redis.xlen(streams.sagas) == 1
    assert await users.denials() == []


async def _value(value: Any) -> Any:
    return value


def step_failed(kind: str) -> dict[str, str]:
    msg = st.StepFailed(saga_id=uuid.uuid4(), step=kind, kind=kind, attempt=1, error_kind="internal", error="forged?")
    return encode(envelope_for(msg, correlation_id=str(msg.saga_id)))


async def test_what_the_acl_cannot_say_the_orchestrator_refuses(
    settings: Settings, users: Users, redis: aioredis.Redis, namespace: str
) -> None:
    """The ACL lets the front ends add to the orchestrator's stream and codegen to its own
    reply stream, whatever they add: a step's reply from the front end, and codegen's
    answer for ml's kind, are dead-lettered by the orchestrator's bus before any decision."""
    from alphasaga_orchestrator.admission import refusal
    from alphasaga_shared.bus import Bus
    from alphasaga_shared.wire import Delivery, Envelope, Outgoing

    streams = Streams(namespace)
    handled: list[tuple[str, str]] = []

    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        handled.append((d.stream, env.type))
        return []

    bus = Bus(as_user(settings, users, ORCHESTRATOR), service=ORCHESTRATOR)
    for stream in (streams.commands(ORCHESTRATOR), streams.events("codegen")):
        bus.subscribe(stream, handle, admit=refusal(streams))
    await bus.start()
    try:
        api, codegen = users.clients[acl.FRONT_END], users.clients["codegen"]
        await api.xadd(streams.commands(ORCHESTRATOR), step_failed("reasoning"))  # type: ignore[arg-type]
        await codegen.xadd(streams.events("codegen"), step_failed("ml"))  # type: ignore[arg-type]
        await api.xadd(streams.commands(ORCHESTRATOR), cancel())  # type: ignore[arg-type]
        await codegen.xadd(streams.events("codegen"), step_failed("codegen"))  # type: ignore[arg-type]
        await eventually(lambda: _value(len(handled) >= 2), timeout=30)
        dead = {}
        for stream in (streams.commands(ORCHESTRATOR), streams.events("codegen")):
            dead[stream] = await eventually(lambda s=stream: redis.xrange(streams.dead_letters(s)), timeout=30)  # type: ignore[misc]
    finally:
        await bus.stop()
    assert sorted(handled) == sorted(
        [(streams.commands(ORCHESTRATOR), sg.CancelSaga.TYPE), (streams.events("codegen"), st.StepFailed.TYPE)]
    )
    errors = {s: [f[b"dlq_error"].decode() for _, f in entries] for s, entries in dead.items()}
    assert errors == {
        streams.commands(ORCHESTRATOR): [
            f"refused: steps.StepFailed is not a request: {streams.commands(ORCHESTRATOR)} takes only "
            "StartResearch, StartCampaign and CancelSaga"
        ],
        streams.events("codegen"): ["refused: steps.StepFailed answers kind ml, which ml hosts, not codegen"],
    }


async def test_the_front_ends_and_the_relays_own_calls_work_on_their_users(
    settings: Settings, users: Users, redis: aioredis.Redis, namespace: str
) -> None:
    """What the front ends do in Redis besides submitting (readiness, following the sagas,
    the held board, the API's rate limits, dead letters) and the relay's sentinel, through
    the modules that do it, each on its user."""
    from alphasaga_api.ratelimit import RateLimiter, RedisCounters
    from alphasaga_client import deadletters as dl
    from alphasaga_client.core import stream_tip
    from alphasaga_shared.bus.redis_log import RedisLog
    from alphasaga_shared.held import held_key
    from alphasaga_shared.sentinel import Sentinel

    streams = Streams(namespace)
    api, orchestrator = users.clients[acl.FRONT_END], users.clients[ORCHESTRATOR]
    for service in Service:
        await redis.xgroup_create(streams.commands(service), service.value, id="0", mkstream=True)
        assert await api.xinfo_groups(streams.commands(service))  # readiness
    newest = await orchestrator.xadd(streams.sagas, forged())  # type: ignore[arg-type]
    assert await stream_tip(api, streams.sagas) == newest.decode()
    await redis.hset(held_key(namespace, "s1"), "c/stream/1-0", "{}")
    assert await api.hgetall(held_key(namespace, "s1")) == {b"c/stream/1-0": b"{}"}
    limiter = RateLimiter(RedisCounters(lambda: _value(api), namespace))
    assert (await limiter.hit("submit", "caller", 1)).allowed
    assert not (await limiter.hit("submit", "caller", 1)).allowed
    await users.clients["ml"].xadd(streams.dead_letters(streams.commands("ml")), {"dlq_error": "x"})
    log = RedisLog(api, settings)  # the client's dead-letter pages read through the bus's log port
    found = await dl.read_dead_letters(log, await log.dead_letter_streams(namespace))
    assert [letter.dlq_stream for letter in found] == [streams.dead_letters(streams.commands("ml"))]
    assert await dl.purge(log, found) == 1
    sentinel = Sentinel(orchestrator, namespace)
    assert await sentinel.forgotten() is not None  # no key yet
    await sentinel.begin()
    assert await sentinel.done()
    assert await sentinel.forgotten() is None
    assert await users.denials() == []


# --- the file itself ---------------------------------------------------------------------------


def test_the_rendered_file_is_what_a_redis_server_loads_and_nothing_else_gets_in(tmp_path: Path) -> None:
    """``alphasaga acl render`` as an operator runs it, loaded by a Redis of this test's own
    (on a Unix socket): the default user is off, a user without a password cannot log in,
    each user has its rights, and admin alone may flush."""
    import redis as sync_redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    passwords = tmp_path / "passwords"
    passwords.mkdir()
    for name in ("ml", acl.ADMIN):
        (passwords / name).write_text(f"{name}-{uuid.uuid4().hex}\n")
    alphasaga = Path(sys.executable).parent / "alphasaga"
    args = [str(alphasaga), "acl", "render", "--namespace", "ns1", "--passwords", str(passwords)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ml-" not in done.stdout  # only the passwords' hashes
    (tmp_path / "users.acl").write_text(done.stdout)
    socket = tmp_path / "redis.sock"  # where redis_on_a_socket listens

    def client(user: str | None = None, password: str | None = None) -> sync_redis.Redis:
        if user and password is None:
            password = (passwords / user).read_text().strip()
        name = f"alphasaga-{user}" if user else None
        once = Retry(NoBackoff(), 0)  # a refusal is the answer, not a fault to try again
        return sync_redis.Redis(unix_socket_path=str(socket), username=name, password=password, retry=once)

    with redis_on_a_socket(tmp_path, tmp_path / "users.acl"):
        refused = (sync_redis.ResponseError, sync_redis.ConnectionError)
        with pytest.raises(refused, match=r"NOAUTH|authenticated"):
            client().xadd("ns1:evt:sagas", {"a": "b"})
        with pytest.raises(refused, match=r"WRONGPASS|invalid username-password"):
            client("codegen", "a guess").ping()  # rendered off: it has no password file
        ml = client("ml")
        assert ml.xadd("ns1:evt:ml", {"a": "b"})
        with pytest.raises(NoPermissionError):
            ml.xadd("ns1:evt:sagas", {"a": "b"})
        with pytest.raises(NoPermissionError):
            ml.flushdb()
        assert client(acl.ADMIN).flushdb()


def test_with_anonymous_ping_a_client_without_a_login_may_ping_and_nothing_else(tmp_path: Path) -> None:
    """``--anonymous-ping`` (the embedded Valkey, compose's and the container test's health
    checks): the default user answers PING and is refused everything else."""
    import redis as sync_redis

    (tmp_path / "users.acl").write_text(acl.render("ns1", {"ml": uuid.uuid4().hex}, anonymous_ping=True))
    with redis_on_a_socket(tmp_path, tmp_path / "users.acl") as socket:
        anonymous = sync_redis.Redis(unix_socket_path=str(socket))
        assert anonymous.ping()
        for forbidden in (lambda: anonymous.xadd("ns1:evt:sagas", {"a": "b"}), lambda: anonymous.get("x")):
            with pytest.raises(NoPermissionError):
                forbidden()
        with pytest.raises(NoPermissionError):
            anonymous.execute_command("ACL", "WHOAMI")  # type: ignore[no-untyped-call]


@contextmanager
def redis_on_a_socket(directory: Path, aclfile: Path) -> Iterator[Path]:
    """A redis-server of the test's own loading ``aclfile``, on a Unix socket in
    ``directory``; yields the socket once it listens."""
    socket = directory / "redis.sock"
    config = ["--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no", "--dir", str(directory)]
    server = subprocess.Popen(
        ["redis-server", *config, "--aclfile", str(aclfile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):  # until it listens (a busy machine: up to a minute)
            if socket.exists() or server.poll() is not None:
                break
            time.sleep(0.1)
        assert server.poll() is None, "redis-server refused the rendered file"
        yield socket
    finally:
        server.terminate()
        server.wait(timeout=30)
