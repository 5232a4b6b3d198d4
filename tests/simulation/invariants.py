"""The invariants checked after every simulated schedule (DESIGN.md §4), against the venue's journal.

(a) every execution of the subscription with ``transact_time`` <= any checkpoint ever written is in
    the executions topic (or the DLQ, or a declared gap's window);
(b) once the faults stop, everything arrives: the connector catches up within bounded virtual time,
    and every execution the venue produced is in Kafka or in a declared gap;
(c) per order, first occurrences keep venue order, unless one of the two records says the hold-back
    bound was passed (``ordering: relaxed``);
(d) duplicates only where a crash left records in flight, or where the venue itself re-sent one;
(e) F never moves backwards: the checkpoints, in the order written, never decrease;
(f) a ``rest_exhausted`` gap only when the searches failed, without a break, for the retry budget
    (``GapDetected`` exactly when REST cannot prove completeness);
(g) once a connected stream's recovery is complete, ``/status`` says ``streaming``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass

from connector.core.record_schemas import RecordType, schema_dict
from connector.core.venue_time import NANOS_PER_SECOND, ns_from_timestamp
from connector.kafka.encoding import SingleObjectDecoder
from tests.simulation.world import CHECKPOINTS, RETRY_BUDGET_S, Outcome
from tests.venue_strategies import TOPICS

GAP_DECODER = SingleObjectDecoder(
    [schema_dict(RecordType.GAP_DETECTED), schema_dict(RecordType.CONNECTOR_HEARTBEAT)]
)
CHECKPOINT_DECODER = SingleObjectDecoder([schema_dict(RecordType.CHECKPOINT)])
EXECUTION_GAPS = frozenset({"rest_exhausted", "beyond_retention"})


@dataclass(frozen=True, slots=True)
class Figures:
    """What one schedule did (for the summary of a batch)."""

    executions: int
    published: int
    duplicates: int
    relaxed: int
    gaps: int
    checkpoints: int
    crashes: int
    restarts: int
    search_requests: int


@dataclass(slots=True)
class _View:
    """What the venue produced and what Kafka holds, read once."""

    journal: list[tuple[str, str, int]]  # (execution id, order id, transact time), venue order
    counts: Counter[str]  # execution id -> copies in the executions topic
    first: dict[str, list[tuple[int, bool]]]  # order -> first occurrences (venue index, relaxed)
    dead: set[str]
    gaps: list[tuple[str, int, int, int]]  # (reason, window start, window end, detected)
    checkpoints: list[int]
    relaxed: int

    def covered(self, execution_id: str, transact_ns: int) -> bool:
        """In Kafka, in the DLQ, or inside a declared gap of executions."""
        if self.counts[execution_id] or execution_id in self.dead:
            return True
        return any(r in EXECUTION_GAPS and start <= transact_ns <= end for r, start, end, _ in self.gaps)


def _view(outcome: Outcome) -> _View:
    venue = outcome.venue
    journal = [
        (entry.execution.id, entry.execution.order.id, ns_from_timestamp(entry.execution.transact_time))
        for entry in venue.executions()
        if venue.in_subscription(entry.execution)
    ]
    venue_index = {execution_id: index for index, (execution_id, _, _) in enumerate(journal)}
    view = _View(journal, Counter(), defaultdict(list), set(), [], [], 0)
    for log in outcome.kafka.records(TOPICS.executions):
        for stored in log:
            execution_id = stored.headers["execution_id"].decode()
            relaxed = stored.headers.get("ordering") == b"relaxed"
            view.relaxed += relaxed
            view.counts[execution_id] += 1
            if view.counts[execution_id] == 1 and execution_id in venue_index:
                view.first[stored.key.decode()].append((venue_index[execution_id], relaxed))
    for log in outcome.kafka.records(TOPICS.dlq):
        view.dead.update(s.headers["execution_id"].decode() for s in log if "execution_id" in s.headers)
    for stored in outcome.kafka.records(TOPICS.heartbeats)[0]:
        if stored.headers.get("event_type") == b"GapDetected":
            gap = GAP_DECODER(stored.value)
            view.gaps.append((gap["reason"], gap["window_start"], gap["window_end"], gap["detected_time"]))
    view.checkpoints = [
        CHECKPOINT_DECODER(s.value)["watermark"] for s in outcome.kafka.records(CHECKPOINTS)[0]
    ]
    return view


def _every_checkpoint_is_true(view: _View) -> list[str]:  # (a)
    for value in sorted(set(view.checkpoints)):
        missing = [e for e, _, t in view.journal if t <= value and not view.covered(e, t)]
        if missing:
            return [f"(a) checkpoint {value} covers {len(missing)} executions not in Kafka: {missing[:5]}"]
    return []


def _everything_arrives(view: _View, outcome: Outcome) -> list[str]:  # (b)
    violations = [] if outcome.caught_up else ["(b) the connector did not catch up once the faults stopped"]
    missing = [e for e, _, t in view.journal if t >= outcome.start_from_ns and not view.covered(e, t)]
    if missing:
        violations.append(f"(b) {len(missing)} executions never reached Kafka: {missing[:5]}")
    return violations


def _orders_keep_venue_order(view: _View) -> list[str]:  # (c)
    for order_id, occurrences in view.first.items():
        for position, earlier in enumerate(occurrences):
            for later in occurrences[position + 1 :]:
                if later[0] < earlier[0] and not (later[1] or earlier[1]):
                    first_id, second_id = view.journal[later[0]][0], view.journal[earlier[0]][0]
                    return [f"(c) order {order_id}: {first_id} landed after {second_id}"]
    return []


def _duplicates_are_explained(view: _View, outcome: Outcome) -> list[str]:  # (d)
    allowed = outcome.in_flight_at_crash | outcome.venue.resent_ids
    unexplained = sorted(e for e, n in view.counts.items() if n > 1 and e not in allowed)
    if unexplained:
        return [f"(d) {len(unexplained)} duplicates no crash or venue re-send explains: {unexplained[:5]}"]
    return []


def _frontier_never_goes_back(view: _View) -> list[str]:  # (e)
    for previous, current in itertools.pairwise(view.checkpoints):
        if current < previous:
            return [f"(e) F moved backwards: {previous} -> {current}"]
    return []


def _gaps_only_when_rest_failed(view: _View, outcome: Outcome) -> list[str]:  # (f)
    wall0 = outcome.start_from_ns + 5 * NANOS_PER_SECOND
    return [
        f"(f) a rest_exhausted gap at {detected} without {RETRY_BUDGET_S:g} s of failed searches"
        for reason, _start, _end, detected in view.gaps
        if reason == "rest_exhausted" and not exhausted_streak(outcome, (detected - wall0) / NANOS_PER_SECOND)
    ]


def _caught_up_reads_streaming(outcome: Outcome) -> list[str]:  # (g)
    phase = outcome.phase_when_caught_up
    if phase is None or phase == "streaming":
        return []
    return [f"(g) the stream's recovery was complete, but /status said phase={phase!r}, not 'streaming'"]


def check(outcome: Outcome) -> tuple[list[str], Figures]:
    """Every violation (empty when the schedule is clean), and the figures."""
    view = _view(outcome)
    violations = [
        *_every_checkpoint_is_true(view),
        *_everything_arrives(view, outcome),
        *_orders_keep_venue_order(view),
        *_duplicates_are_explained(view, outcome),
        *_frontier_never_goes_back(view),
        *_gaps_only_when_rest_failed(view, outcome),
        *_caught_up_reads_streaming(outcome),
    ]
    figures = Figures(
        executions=len(view.journal),
        published=sum(view.counts.values()),
        duplicates=sum(n - 1 for n in view.counts.values() if n > 1),
        relaxed=view.relaxed,
        gaps=sum(1 for reason, *_ in view.gaps if reason in EXECUTION_GAPS),
        checkpoints=len(view.checkpoints),
        crashes=outcome.crashes,
        restarts=outcome.restarts,
        search_requests=outcome.search_requests,
    )
    return violations, figures


def exhausted_streak(outcome: Outcome, detected_s: float) -> bool:
    """Whether one connector process saw searches fail without a break for the retry budget, up to then.

    A 429 is the venue answering (pacing, not an outage): it breaks a streak, like a page does.
    """
    for answers in outcome.search_answers:
        streak_start = None
        for at, status in answers:
            if at > detected_s + 1e-6:
                break
            if status in {200, 429}:
                streak_start = None
            elif streak_start is None:
                streak_start = at
        if streak_start is not None and detected_s - streak_start >= RETRY_BUDGET_S - 1e-6:
            return True
    return False
