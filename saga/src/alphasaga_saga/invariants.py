"""Invariants of a saga, checked from what the event store holds (its events and its
outbox rows). Used by the chaos tests and by ``alphasaga replay --check``.

- versions run 1..n without gaps, the first event is Started, nothing follows a terminal event;
- every command travelled in the saga's lane: an express saga's on the express streams,
  any other's on the normal ones (the lane its Started event records);
- no step attempt and no compensation attempt is commanded twice, and each command was put
  in the outbox exactly once, under the message id the event recorded (the outbox may also
  hold the saga's start, recorded there by a submit through the API, and its lifecycle
  events: neither is a command);
- every command issued has an outcome (a reply, a timeout, or the saga moved on to
  compensation), except the one the saga is still waiting for;
- a terminal state agrees with the events before it: COMPLETED after every step
  succeeded in order; ROLLED_BACK after every succeeded step was compensated, newest
  first (after the step a cancel interrupted, if any); COMPENSATION_FAILED after a compensation attempt failed;
- folding the events again gives the state the last event says;
- the workflow's DAG was kept: no step (or branch) commanded before its needs succeeded, a
  fan-in only after its branches (all, or its first k), a branch only of a fan-out that
  planned it; no compensation commanded before that of every step to undo that needs it
  (which completed after it), so the order agrees with the order of completion. For a
  workflow whose steps are a chain, "in order" and "newest first" are exact orders; in a
  DAG, independent branches may succeed and be compensated in either order;
- a campaign (docs/decisions/0022) started each child once, never more at once than its
  concurrency, and none after it stopped; recorded each child's end once, only of a child
  it started; commanded its report only once every child had ended; completed only after
  its whole budget ended; and each child's start is in its outbox once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from alphasaga_contracts import Priority, Streams
from alphasaga_contracts.campaign import CAMPAIGN_WORKFLOW
from alphasaga_shared.eventstore import RecordedEvent

from . import dag
from .aggregate import ENDING_EVENTS as _TERMINAL_EVENTS
from .workflow import Workflow, WorkflowRegistry, WorkflowSettings, load_workflows

_STEP_OUTCOMES = {"StepSucceeded", "StepFailed", "StepTimedOut"}
_NOT_COMMANDS = ("sagas.", "orchestrator.")


def kind(row: RecordedEvent) -> str:
    """``alphasaga_orchestrator.saga:Saga.StepCommanded`` -> ``StepCommanded``."""
    return row.type.rsplit(".", 1)[-1]


def check_saga(
    saga_id: uuid.UUID,
    events: Sequence[RecordedEvent],
    outbox: Sequence[RecordedEvent],
    *,
    fold: Any = None,
    workflows: WorkflowRegistry | None = None,
) -> list[str]:
    """Every violation found, in words; an empty list means the saga is healthy.
    ``fold``, when given, rebuilds the aggregate from ``events`` (``SagaRepository.fold``).
    ``workflows`` holds the definition the saga ran on (default: those the orchestrator
    is configured with, ``ALPHASAGA_WORKFLOWS`` or the built-in ones)."""
    problems: list[str] = []
    if not events:
        return [f"saga {saga_id} has no events"]
    kinds = [kind(e) for e in events]
    versions = [e.version for e in events]
    if versions != list(range(1, len(events) + 1)):
        problems.append(f"versions are not contiguous from 1: {versions}")
    if kinds[0] != "Started":
        problems.append(f"first event is {kinds[0]}, not Started")
    terminal_at = next((i for i, k in enumerate(kinds) if k in _TERMINAL_EVENTS), None)
    if terminal_at is not None and terminal_at != len(kinds) - 1:
        problems.append(f"{len(kinds) - 1 - terminal_at} event(s) after terminal {kinds[terminal_at]}")

    workflow = _workflow_of(events[0], workflows)
    if isinstance(workflow, str):
        # Without its definition a log that ran one step at a time is held to a chain's
        # rules (exact orders), which is what it was; one that ran steps side by side
        # cannot be checked, and that is reported.
        chain = _sequential(events)
        if not chain:
            problems.append(workflow)
        workflow = None
    else:
        chain = workflow is None or workflow.is_chain()
    problems += _check_commands(events, outbox, chain)
    problems += _check_lane(events[0], outbox)
    problems += _check_terminal(events, chain)
    if workflow is not None:
        problems += _check_dag(events, workflow)
    if events[0].data.get("workflow") == CAMPAIGN_WORKFLOW:
        problems += _check_campaign(events, outbox)
    if fold is not None:
        try:
            saga = fold(saga_id, events)
        except Exception as exc:  # a broken history is what we are looking for: report it
            problems.append(f"the events do not fold: {type(exc).__name__}: {exc}")
        else:
            if terminal_at is not None:
                expected = _TERMINAL_EVENTS[kinds[terminal_at]]
                if saga is None or saga.state != expected:
                    problems.append(f"folding the events gives {getattr(saga, 'state', None)}, the log says {expected}")
    return problems


def _check_lane(started: RecordedEvent, outbox: Sequence[RecordedEvent]) -> list[str]:
    lane = Priority(started.data.get("priority", Priority.NORMAL))
    return [
        f"{r.type} {r.metadata.get('message_id')} went to {r.metadata.get('stream')}, not the {lane} lane"
        for r in outbox
        if not r.type.startswith(_NOT_COMMANDS) and Streams.priority_of(str(r.metadata.get("stream"))) != lane
    ]


# Complexity 14: one pass over the events with one branch per kind of event, which reads
# as the table it is; split up, the bookkeeping of open commands would be spread apart.
def _check_commands(events: Sequence[RecordedEvent], outbox: Sequence[RecordedEvent], chain: bool) -> list[str]:
    problems: list[str] = []
    commanded: Counter[tuple[str, str, int]] = Counter()
    open_commands: dict[tuple[str, str, int], int] = {}
    sent_ids = Counter(str(r.metadata.get("message_id")) for r in outbox)
    for e in events:
        k, d = kind(e), e.data
        if k in ("StepCommanded", "CompensationCommanded"):
            key = ("step" if k == "StepCommanded" else "compensation", d["step"], int(d["attempt"]))
            commanded[key] += 1
            open_commands[key] = e.version
            if sent_ids.get(str(d["message_id"]), 0) != 1:
                problems.append(
                    f"{k} {d['step']} attempt {d['attempt']}: message {d['message_id']} is in the outbox "
                    f"{sent_ids.get(str(d['message_id']), 0)} times, not once"
                )
        elif k in _STEP_OUTCOMES:
            open_commands.pop(("step", d["step"], int(d["attempt"])), None)
        elif k == "StepCompensated":
            for key in [key for key in open_commands if key[0] == "compensation" and key[1] == d["step"]]:
                open_commands.pop(key)
        elif k == "CompensationAttemptFailed":
            open_commands.pop(("compensation", d["step"], int(d["attempt"])), None)
        elif k == "CompensationStarted":
            # A cancel may interrupt the step in flight: its command is answered by compensation.
            for key in [key for key in open_commands if key[0] == "step"]:
                open_commands.pop(key)
    for (what, step, attempt), n in commanded.items():
        if n > 1:
            problems.append(f"{what} {step} attempt {attempt} was commanded {n} times")
    # A running chain waits for one reply at most; a DAG's branches, for one each.
    still_waiting = 0 if kind(events[-1]) in _TERMINAL_EVENTS else (1 if chain else len(open_commands))
    if len(open_commands) > still_waiting:
        listed = ", ".join(f"{w} {s} attempt {a}" for (w, s, a) in sorted(open_commands))
        problems.append(f"commands without a reply, a timeout or a compensation: {listed}")
    # Lifecycle events (sagas.*) and requests to the orchestrator (orchestrator.*: a start
    # recorded in the outbox by a submit) are not commands the saga issued.
    command_types = [r for r in outbox if not r.type.startswith(_NOT_COMMANDS)]
    if len(command_types) != sum(commanded.values()):
        problems.append(f"{len(command_types)} commands in the outbox for {sum(commanded.values())} issued")
    return problems


# Complexity 13: one branch per way a saga ends, each with its own rule for a chain and a DAG.
def _check_terminal(events: Sequence[RecordedEvent], chain: bool) -> list[str]:
    last = kind(events[-1])
    if last not in _TERMINAL_EVENTS:
        return []
    succeeded = [e.data["step"] for e in events if kind(e) == "StepSucceeded"]
    compensated = [e.data["step"] for e in events if kind(e) == "StepCompensated"]
    started = events[0].data
    problems: list[str] = []
    if last == "Completed":
        commanded_steps = list(dict.fromkeys(e.data["step"] for e in events if kind(e) == "StepCommanded"))
        if (succeeded if chain else sorted(succeeded)) != (commanded_steps if chain else sorted(commanded_steps)):
            problems.append(f"COMPLETED but succeeded steps {succeeded} differ from commanded {commanded_steps}")
        if any(kind(e) == "CompensationStarted" for e in events):
            problems.append("COMPLETED after compensation started")
    elif last == "RolledBack":
        compensation = next((e.data for e in events if kind(e) == "CompensationStarted"), None)
        if compensation is None:
            problems.append("ROLLED_BACK without CompensationStarted")
        interrupted = (compensation or {}).get("interrupted")  # a step in flight when cancelled
        in_flight = (compensation or {}).get("in_flight") or []  # a DAG's, when it stopped
        expected = ([interrupted] if interrupted else []) + in_flight + succeeded[::-1]
        if chain and compensated != expected:
            problems.append(f"ROLLED_BACK but compensated {compensated}, expected newest first {expected}")
        elif not chain and sorted(compensated) != sorted(expected):
            problems.append(f"ROLLED_BACK but compensated {compensated}, expected each of {expected} once")
    elif last == "CompensationFailed":
        failed_step = events[-1].data["step"]
        if not any(kind(e) == "CompensationAttemptFailed" and e.data["step"] == failed_step for e in events):
            problems.append(f"COMPENSATION_FAILED for {failed_step} without a failed compensation attempt")
    if started.get("workflow") is None:
        problems.append("Started carries no workflow")
    return problems


def _workflow_of(started: RecordedEvent, workflows: WorkflowRegistry | None) -> Workflow | str | None:
    """The definition the saga started on, or why it cannot be had."""
    name, version = started.data.get("workflow"), started.data.get("workflow_version")
    if name is None or version is None:
        return None  # reported by _check_terminal
    registry = workflows if workflows is not None else load_workflows(WorkflowSettings().workflows)
    try:
        return registry.get(str(name), int(version))
    except KeyError:
        return f"workflow {name} v{version} is not among the definitions given: its DAG cannot be checked"


def _sequential(events: Sequence[RecordedEvent]) -> bool:
    """Whether no two step attempts were ever out at once, and nothing fanned out."""
    out: set[str] = set()
    for e in events:
        k = kind(e)
        if k == "FannedOut":
            return False
        if k == "StepCommanded":
            out.add(e.data["step"])
            if len(out) > 1:
                return False
        elif k in _STEP_OUTCOMES:
            out.discard(e.data["step"])
        elif k == "CompensationStarted":
            out.clear()
    return True


def _check_dag(events: Sequence[RecordedEvent], workflow: Workflow) -> list[str]:
    """No step before its needs (a fan-in: before its branches); no compensation before
    those of the steps to undo that need it."""
    problems: list[str] = []
    completed: list[str] = []
    fanned: dict[str, list[str]] = {}
    to_undo: set[str] = set()
    undone: set[str] = set()
    reused: set[str] = set()
    for e in events:
        k, d = kind(e), e.data
        if k == "FannedOut":
            fanned[d["step"]] = list(d["items"])
        elif k == "StepsReused":  # a fork's: done, and another saga's to undo
            completed += list(d["outputs"])
            reused |= set(d["outputs"])
        elif k == "StepSucceeded":
            completed.append(d["step"])
        elif k == "StepCommanded":
            problems += _needs_problem(workflow, fanned, completed, d["step"])
        elif k == "CompensationStarted":
            to_undo = {d["interrupted"]} if d.get("interrupted") else set()
            to_undo |= set(d.get("in_flight") or []) | (set(completed) - reused)
        elif k == "StepCompensated":
            undone.add(d["step"])
        elif k == "CompensationCommanded" and int(d["attempt"]) == 1:
            later = {n for n in to_undo - undone if d["step"] in dag.ancestors(workflow, fanned, n)}
            if later:
                problems.append(f"{d['step']} compensated before {sorted(later)}, which need it")
    return problems


# Complexity 12: one pass over a campaign's events, one branch per rule it keeps.
def _check_campaign(events: Sequence[RecordedEvent], outbox: Sequence[RecordedEvent]) -> list[str]:
    problems: list[str] = []
    request = events[0].data.get("request") or {}
    concurrency, budget = int(request.get("concurrency", 0)), int(request.get("budget", 0))
    started: dict[str, int] = {}
    running: set[str] = set()
    ended: set[str] = set()
    stopped = False
    starts = Counter(str(r.metadata.get("message_id")) for r in outbox if r.type == "orchestrator.StartResearch")
    for e in events:
        k, d = kind(e), e.data
        if k == "ChildStarted":
            child = d["child"]
            if child in started:
                problems.append(f"child {child} started twice")
            if stopped:
                problems.append(f"child {child} started after the campaign stopped")
            started[child] = int(d["trial"])
            running.add(child)
            if len(running) > concurrency:
                problems.append(f"{len(running)} children running at once, over the concurrency of {concurrency}")
            if starts.get(str(d["message_id"]), 0) != 1:
                problems.append(f"child {child}'s start is in the outbox {starts.get(str(d['message_id']), 0)} times")
        elif k == "ChildEnded":
            if d["child"] not in running:
                problems.append(f"the end of child {d['child']} recorded, which was not running")
            running.discard(d["child"])
            ended.add(d["child"])
        elif k == "CompensationStarted":
            stopped = True
        elif k == "StepCommanded" and running | (set(started) - ended):
            problems.append(f"{d['step']} commanded while {len(running)} children still ran")
        elif k == "Completed" and len(ended) != budget:
            problems.append(f"COMPLETED after {len(ended)} of {budget} children ended")
    return problems


def _needs_problem(workflow: Workflow, fanned: dict[str, list[str]], completed: list[str], name: str) -> list[str]:
    try:
        step = workflow.step(name)
    except KeyError:
        return [f"{name} commanded, but workflow {workflow.name} v{workflow.version} has no such step"]
    if name not in (dag.instances(step, fanned) or []):
        return [f"{name} commanded, but no fan-out planned it"]
    if dag.needs_met(workflow, fanned, completed, name):
        return []
    missing = [n for n in dag.instance_needs(workflow, fanned, name) if n not in completed]
    fan_in = step.fan_out is None and any(workflow.step(n).fan_out is not None for n in workflow.needs(name))
    what = "fan-in " if fan_in else ""
    return [f"{what}{name} commanded before its needs succeeded (waiting for {missing or 'unplanned branches'})"]
