"""Acting on sagas: submit (straight to Redis, or recorded in the outbox), cancel, and
publish any validated message."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alphasaga_contracts import Priority, SubmissionState
from alphasaga_shared.errors import InvalidRequest, InvalidTransition

from .core import Core, text_of

if TYPE_CHECKING:
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_shared.eventstore import Conn
    from alphasaga_shared.wire import Envelope

# Writes what must commit with a recorded submit (its owner) on the submit's connection;
# returns False when the saga id was submitted before (then nothing more is written).
Record = Callable[["Conn", uuid.UUID], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Submitted:
    saga_id: uuid.UUID
    message_id: str
    # The request's entry on the orchestrator's command stream; empty for a submit recorded
    # in the outbox, which the relay publishes after the commit.
    entry_id: str
    # The lifecycle stream's newest entry before the request was sent: following from
    # here misses none of the saga's events.
    follow_from: str = "0-0"


class Commands(Core):
    async def submit(
        self,
        request: ResearchRequest,
        *,
        workflow: str = "research",
        saga_id: uuid.UUID | None = None,
        message_id: str | None = None,
        workflow_version: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Submitted:
        """Publish a research request. The same ``message_id`` (an idempotency key) always
        names the same saga: without ``saga_id`` the orchestrator derives it from the id.
        ``workflow_version`` picks a version (a preview); unset, the newest that is not one.
        ``priority`` express: the saga's every message travels on the express lanes."""
        env = self.start_envelope(
            request,
            workflow=workflow,
            saga_id=saga_id,
            message_id=message_id,
            workflow_version=workflow_version,
            priority=priority,
        )
        tip = await self.lifecycle_cursor()
        entry_id = await self._send(self._requests(priority), env)
        return Submitted(uuid.UUID(env.correlation_id), env.message_id, entry_id, tip)

    async def submit_recorded(
        self,
        request: ResearchRequest,
        record: Record,
        *,
        workflow: str = "research",
        message_id: str | None = None,
        workflow_version: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Submitted:
        """Record a research request in the outbox (the stream ``outbox:<saga id>``) in one
        PostgreSQL transaction with what ``record`` writes, and leave its publishing to the
        relay, which any commit to the outbox wakes. Nothing accepted is then lost when Redis
        forgets, and a crash leaves both writes or neither. A request whose saga id was
        submitted before (``record`` says so) is not recorded again."""
        env = self.start_envelope(
            request, workflow=workflow, message_id=message_id, workflow_version=workflow_version, priority=priority
        )
        return await self._start_recorded(env, record)

    async def _start_recorded(self, env: Envelope, record: Record) -> Submitted:
        """A start's envelope written to the outbox with what ``record`` writes, in one transaction."""
        from alphasaga_shared.eventstore import outbox_stream
        from alphasaga_shared.outbox_rows import notice, outbox_events
        from alphasaga_shared.wire import Outgoing

        self._entry(env)  # too large to be read: refused before anything is written
        saga_id = uuid.UUID(env.correlation_id)
        lane = getattr(env.message, "priority", Priority.NORMAL)
        rows = outbox_events([Outgoing(self._requests(lane), env)])
        events = await self.event_store()
        async with events.transaction() as conn:
            if await record(conn, saga_id):
                await events.append(outbox_stream(str(saga_id)), rows, expected_version=None, conn=conn)
                await events.notify_outbox(conn, notice(rows))
        return Submitted(saga_id, env.message_id, "")

    def start_envelope(
        self,
        request: ResearchRequest,
        *,
        workflow: str = "research",
        saga_id: uuid.UUID | None = None,
        message_id: str | None = None,
        workflow_version: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Envelope:
        """The ``StartResearch`` envelope of a research request."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        saga_id = saga_id or (sg.derived_saga_id(message_id) if message_id else uuid.uuid4())
        message = sg.StartResearch(
            saga_id=saga_id, workflow=workflow, workflow_version=workflow_version, request=request, priority=priority
        )
        return envelope_for(message, correlation_id=str(saga_id), message_id=message_id)

    async def submit_many(
        self, requests: Sequence[ResearchRequest], *, workflow: str = "research", workflow_version: int | None = None
    ) -> list[Submitted]:
        """Publish many research requests in one round trip (a campaign, a burst)."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        tip = await self.lifecycle_cursor()
        envelopes = []
        for request in requests:
            saga_id = uuid.uuid4()
            message = sg.StartResearch(
                saga_id=saga_id, workflow=workflow, workflow_version=workflow_version, request=request
            )
            envelopes.append(envelope_for(message, correlation_id=str(saga_id)))
        stream = self.requests_stream()
        entry_ids = await (await self.transport()).publish_entries([(stream, self._entry(env)) for env in envelopes])
        return [
            Submitted(uuid.UUID(env.correlation_id), env.message_id, text_of(entry_id), tip)
            for env, entry_id in zip(envelopes, entry_ids, strict=True)
        ]

    async def plan_fork(
        self, saga: str | uuid.UUID, from_step: str, changes: dict[str, Any], *, message_id: str | None = None
    ) -> Any:
        """The ``StartResearch`` of a fork of ``saga`` from ``from_step`` (``forking.plan_fork``);
        the same ``message_id`` always names the same new saga."""
        from alphasaga_contracts import saga as sg
        from alphasaga_saga.workflow import WorkflowSettings, load_workflows

        from .forking import plan_fork

        source = await self.resolve(saga)
        rows = await (await self.saga_store()).events_of(source)
        new_id = sg.derived_saga_id(message_id) if message_id else uuid.uuid4()
        workflows = load_workflows(WorkflowSettings().workflows)
        return plan_fork(source, rows, workflows, from_step, changes, new_id=new_id)

    async def start_recorded(self, message: Any, record: Record, *, message_id: str | None = None) -> Submitted:
        """A planned start (a fork's) recorded in the outbox with what ``record`` writes."""
        from alphasaga_shared.wire import envelope_for

        env = envelope_for(message, correlation_id=str(message.saga_id), message_id=message_id)
        return await self._start_recorded(env, record)

    async def fork(self, saga: str | uuid.UUID, from_step: str, changes: dict[str, Any] | None = None) -> Submitted:
        """Start a new saga from ``from_step`` of ``saga``: the steps it needs are reused
        (their outputs and artifacts, not run again), ``changes`` (``request.<field>`` or a
        dotted path in the saga's context) applied (``forking.plan_fork``)."""
        from alphasaga_shared.wire import envelope_for

        message = await self.plan_fork(saga, from_step, changes or {})
        env = envelope_for(message, correlation_id=str(message.saga_id))
        tip = await self.lifecycle_cursor()
        entry_id = await self._send(self._requests(message.priority), env)
        return Submitted(uuid.UUID(env.correlation_id), env.message_id, entry_id, tip)

    async def cancel(self, saga: str | uuid.UUID, reason: str = "cancelled by user") -> Submitted:
        """Ask the orchestrator to compensate a running saga; refuses one that has ended,
        and one that has not started yet (the cancel could overtake its start)."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        saga_id = await self.resolve(saga)
        current = await (await self.reader()).status(saga_id)
        if current is not None and current.terminal:
            raise InvalidTransition(f"saga {saga_id} already ended {current.state}: nothing to cancel")
        if current is not None and current.state == SubmissionState.PENDING:
            raise InvalidTransition(f"saga {saga_id} has not started yet: cancel it once it is RUNNING")
        env = envelope_for(sg.CancelSaga(saga_id=saga_id, reason=reason), correlation_id=str(saga_id))
        entry_id = await self._send(self.requests_stream(), env)
        return Submitted(saga_id, env.message_id, entry_id)

    async def publish(self, stream: str, envelope: Envelope) -> str:
        """Publish a validated message (``messages.build_envelope``) to ``stream``; returns
        the entry id."""
        from .messages import resolve_stream

        return await self._send(resolve_stream(stream, self.settings.streams), envelope)

    async def lifecycle_cursor(self) -> str:
        """The lifecycle stream's newest entry id: following from it misses nothing of a saga
        whose request is sent afterwards."""
        return await (await self.transport()).tip(self.settings.streams.sagas)

    def _requests(self, priority: Priority) -> str:
        """The orchestrator's command stream in ``priority``'s lane."""
        return self.settings.streams.lane(self.requests_stream(), priority)

    async def _send(self, stream: str, env: Envelope) -> str:
        (entry_id,) = await (await self.transport()).publish_entries([(stream, self._entry(env))])
        return entry_id

    def _entry(self, env: Envelope) -> dict[str, str]:
        """The stream entry for ``env``, refused before anything is sent when it is larger
        than the services accept (``ALPHASAGA_MAX_ENTRY_BYTES``)."""
        from alphasaga_shared.wire import encode, entry_size

        fields = encode(env)
        size, limit = entry_size(fields), self.settings.max_entry_bytes
        if size > limit:
            raise InvalidRequest(f"{env.type} of {size:,} bytes is over the {limit:,}-byte limit: not sent")
        return fields
