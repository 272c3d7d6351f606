"""What a set of decisions will commit: each decision's events and outgoing messages are
added as they are made, and ``changes`` turns the lot into the saga store's unit of work
(with the timers and snapshots the sagas' new states call for).

It is also the adapter between the decisions' domain messages and the wire: each step
command goes to the command stream of its kind (its express lane for an express saga),
each lifecycle event to the sagas stream, in an envelope naming the saga, the input that
caused it and the span it belongs to; a message from one saga to another (a campaign's
child's start, a child's end) to the orchestrator's own streams. A lifecycle event's id is
derived from its cause and its place in the decision, so that deciding the same input
again gives the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alphasaga_contracts import Priority, Service, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_saga.aggregate import Deadline, Saga, due_time, priority_of
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import NewEvent, outbox_stream
from alphasaga_shared.outbox_rows import notice, outbox_events
from alphasaga_shared.wire import Envelope, Outgoing, derived_message_id

from . import observe
from .decide import Decision, Incoming, ToOrchestrator, ToWorker
from .repository import SagaRepository
from .storage import Changes, Timer


@dataclass
class Touched:
    """A saga as it was loaded, and as the decisions of this plan left it."""

    saga: Saga | None
    version: int
    state: str | None
    deadline: Deadline | None
    commanded: dict[str, dict[str, Any]]


@dataclass
class Plan:
    repo: SagaRepository
    streams: Streams
    traced: bool = False
    message_ids: list[str] = field(default_factory=list)
    events: list[tuple[str, int | None, int, NewEvent]] = field(default_factory=list)
    touched: dict[uuid.UUID, Touched] = field(default_factory=dict)
    outbox: list[NewEvent] = field(default_factory=list)
    decided: list[observe.Decided] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _next_ord: dict[str, int] = field(default_factory=dict)

    def before(self, saga_id: uuid.UUID, loaded: Saga | None) -> Touched:
        """The saga as the plan's first decision on it saw it."""
        if saga_id not in self.touched:
            if loaded is None:
                self.touched[saga_id] = Touched(None, 0, None, None, {})
            else:
                deadline = loaded.deadline.copy() if loaded.deadline else None
                commanded = dict(getattr(loaded, "commanded", {}))
                self.touched[saga_id] = Touched(loaded, loaded.version, loaded.state, deadline, commanded)
        return self.touched[saga_id]

    def add(self, saga_id: uuid.UUID, incoming: Incoming, decision: Decision, traceparent: str) -> None:
        touched = self.touched[saga_id]
        saga = decision.saga
        self.message_ids.append(incoming.message_id)
        if decision.note:
            self.notes.append(f"saga {saga_id}: {decision.note}")
        pending = saga.collect_events() if saga is not None else []
        if pending:
            assert saga is not None
            meta = {"correlation_id": str(saga_id), "causation_id": incoming.message_id, "traceparent": traceparent}
            self._append(saga_stream(saga_id), touched.version, self.repo.to_new_events(pending, meta))
            self.decided.append(observe.Decided(saga, pending, incoming, touched.commanded))
            touched.commanded = dict(getattr(saga, "commanded", {}))
        touched.saga = saga
        if decision.sends:
            out = self.addressed(saga_id, saga, incoming.message_id, decision, traceparent)
            rows = outbox_events(out)
            for send, row in zip(decision.sends, rows, strict=True):
                # A child's end is written to its campaign's outbox, not its own: the relay
                # publishes again the outbox of every saga not ended when Redis forgets, and
                # the child has ended, its campaign not (docs/decisions/0022).
                owner = saga_id
                if isinstance(send, ToOrchestrator) and isinstance(send.message, sg.ChildSagaEnded):
                    owner = send.about
                self._append(outbox_stream(str(owner)), None, [row])
            self.outbox.extend(rows)

    def addressed(
        self, saga_id: uuid.UUID, saga: Saga | None, cause: str, decision: Decision, traceparent: str
    ) -> list[Outgoing]:
        """The decision's messages on their streams, in their envelopes (``cause`` is the id
        of the input decided on)."""
        fallback = traceparent or (saga.traceparent if saga is not None else "")
        root = observe.root_ids(saga_id, saga.traceparent) if self.traced and saga is not None else None
        lane = Priority(priority_of(saga)) if saga is not None else Priority.NORMAL
        out: list[Outgoing] = []
        for i, send in enumerate(decision.sends):
            if isinstance(send, ToWorker):
                stream = self.streams.lane(self.streams.commands(send.step.queue), lane)
                message_id = send.message_id
                kind = "step" if isinstance(send.message, st.StepCommand) else "compensation"
                span = (
                    observe.attempt_ids(root, saga_id, kind, send.message.step, send.message.attempt) if root else None
                )
            elif isinstance(send, ToOrchestrator):
                # A child's end goes on the orchestrator's own event stream, which only it
                # writes: nobody else can tell a campaign that a child ended.
                ended = isinstance(send.message, sg.ChildSagaEnded)
                stream = (
                    self.streams.events(Service.ORCHESTRATOR) if ended else self.streams.commands(Service.ORCHESTRATOR)
                )
                env = Envelope(send.message, send.message_id, str(send.about), cause, fallback)
                out.append(Outgoing(stream, env))
                continue
            else:
                stream, message_id, span = (
                    self.streams.sagas,
                    derived_message_id(cause, send.message.TYPE, str(i)),
                    root,
                )
            env = Envelope(send.message, message_id, str(saga_id), cause, span.traceparent if span else fallback)
            out.append(Outgoing(stream, env))
        return out

    def _append(self, stream: str, expected: int | None, rows: Sequence[NewEvent]) -> None:
        for row in rows:
            ordinal = self._next_ord.get(stream, 0) + 1
            self._next_ord[stream] = ordinal
            self.events.append((stream, expected, ordinal, row))

    def changes(self, *, notify: bool) -> Changes:
        """The unit of work: events, outbox rows and inbox records, and for each saga that
        moved its deadline (or lack of one) and, every so many events, a snapshot.
        ``notify``: the commit's NOTIFY carries the outbox rows to the relay holding the
        lock (in another process)."""
        out = Changes(
            inbox=self.message_ids, events=self.events, notice=notice(self.outbox) if notify and self.outbox else None
        )
        for saga_id, t in self.touched.items():
            out.expected[saga_stream(saga_id)] = t.version
            saga = t.saga
            if saga is None:
                continue
            if saga.deadline != t.deadline or saga.version != t.version:
                pending = saga.deadline
                if pending is None:
                    out.cleared_timers.append(saga_id)
                else:
                    out.timers.append(
                        Timer(
                            saga_id,
                            due_time(pending),
                            pending["kind"],
                            pending["step"],
                            pending["attempt"],
                            saga.version,
                        )
                    )
            if self.repo.due_for_snapshot(t.version, saga.version):
                out.snapshots.append(self.repo.snapshot_of(saga))
        return out
