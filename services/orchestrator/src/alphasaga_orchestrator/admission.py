"""Which messages the orchestrator takes from which stream (issue #30).

Redis's ACL lets the front ends add to the orchestrator's command stream and each worker
to its reply stream, but it cannot say what they add. So the orchestrator takes only
requests (``StartResearch``, ``StartCampaign``, ``CancelSaga``) from its command stream,
from its own event stream (which only it may write) only a child's end for its campaign,
and from a worker's reply stream only the replies of the kinds that worker hosts; anything else is
dead-lettered before a decision sees it. A front end cannot forge a step's result, and a
compromised worker cannot answer for another's kinds."""

from __future__ import annotations

from alphasaga_contracts import Message, Service, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.steps import KINDS
from alphasaga_shared.bus.chain import Refusal
from alphasaga_shared.wire import Delivery

REQUESTS = (sg.StartResearch, sg.StartCampaign, sg.CancelSaga)
# A step's end that names its kind in the message rather than in its type.
KIND_NAMED = (st.StepFailed, st.StepCompensated, st.CompensationFailed)


def misplaced(streams: Streams, stream: str, message: Message) -> str | None:
    """Why ``message`` does not belong on ``stream``, or None when it does (or the stream is
    none of the orchestrator's: not its to judge). Both lanes of a stream take the same."""
    stream = streams.normal_lane(stream)
    if stream == streams.commands(Service.ORCHESTRATOR):
        if isinstance(message, REQUESTS):
            return None
        return f"{message.TYPE} is not a request: {stream} takes only StartResearch, StartCampaign and CancelSaga"
    if stream == streams.events(Service.ORCHESTRATOR):
        if isinstance(message, sg.ChildSagaEnded):
            return None
        return f"{message.TYPE} is not a child's end: {stream} takes only ChildSagaEnded"
    for worker in KINDS.services():
        if stream == streams.events(worker):
            return _not_a_reply_of(worker, message)
    return None


def _not_a_reply_of(worker: Service, message: Message) -> str | None:
    kind = KINDS.of_result(type(message))
    if kind is None and isinstance(message, KIND_NAMED) and message.kind in KINDS:
        kind = KINDS[message.kind]
    if kind is None:
        return f"{message.TYPE} is not a step's reply"
    if kind.service != worker:
        return f"{message.TYPE} answers kind {kind.name}, which {kind.service} hosts, not {worker}"
    return None


def refusal(streams: Streams) -> Refusal:
    """The bus's ``admit`` for the orchestrator's subscriptions."""

    def why(d: Delivery) -> str | None:
        return None if d.envelope is None else misplaced(streams, d.stream, d.envelope.message)

    return why
