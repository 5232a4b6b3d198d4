"""The invariants checked after every simulated schedule (DESIGN.md §4), against the venue's journal.

Every record is written in a Kafka transaction, so Kafka holds two views: what a ``read_committed``
consumer sees (committed transactions) and what a ``read_uncommitted`` one sees (aborted and open
ones too). The connector's own readers (checkpoint store, dedup seeder) read committed, and so do the
consumers issue 15 is about: (a)-(f), (h) and (i) are about the committed view. The uncommitted
view is a superset of it, so (b) holds there too: nothing is missing from either; and (c) is
checked on both (a record that failed must not be overtaken by a later one of its order even in an
aborted transaction, which a ``read_uncommitted`` consumer reads).

(a) every execution of the subscription with ``transact_time`` <= any checkpoint ever written is in
    the executions topic (or the DLQ, or a declared gap's window);
(b) once the faults stop, everything arrives: the connector catches up within bounded virtual time,
    and every execution the venue produced is in Kafka or in a declared gap;
(c) per order, first occurrences keep venue order, unless one of the two records says the hold-back
    bound was passed (``ordering: relaxed``), in both views;
(d) duplicates only where a crash left records in flight, or where the venue itself re-sent one;
(e) F never moves backwards: the checkpoints, in the order written, never decrease;
(f) a ``rest_exhausted`` gap only when the searches failed, without a break, for the retry budget
    (``GapDetected`` exactly when REST cannot prove completeness);
(g) once a connected stream's recovery is complete, ``/status`` says ``streaming``;
(h) ``exactly_once``: every execution ID at most once, across crashes, outages, restarts and zombies
    (the venue's own re-sends of one ID are dropped by dedup), and every execution up to the final F
    exactly once (or in the DLQ, or a declared gap);
(i) fencing: once a newer process has initialised its transactions, nothing an older one (a zombie)
    sends is appended, nothing of it becomes visible to a ``read_committed`` consumer, and the older
    one stops with ``FatalProducerError`` saying it was fenced (unless it was stopping already: a
    SIGTERM, or a failed delivery of its own); none is still running at the end;
(j) F claims only what the mode delivers: at every moment F moved, every execution before it was
    already committed (``exactly_once``) or appended (``at_least_once``), or dead-lettered or in a
    declared gap by then.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from connector.core.record_schemas import RecordType, schema_dict
from connector.core.venue_time import NANOS_PER_SECOND, ns_from_timestamp
from connector.kafka.encoding import SingleObjectDecoder
from tests.simulation.kafka import Stored
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
    exactly_once: bool = False
    duplicates_uncommitted: int = 0  # in the read_uncommitted view (aborted transactions included)
    aborted: int = 0  # records of aborted transactions
    commits: int = 0
    zombies: int = 0
    fenced: int = 0  # zombies that stopped fenced


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
    visible: dict[str, int] = field(default_factory=dict)  # execution id -> cluster serial it was visible
    gap_visible: list[int] = field(default_factory=list)  # per gap, the serial it was visible

    def covered(self, execution_id: str, transact_ns: int) -> bool:
        """In Kafka, in the DLQ, or inside a declared gap of executions."""
        if self.counts[execution_id] or execution_id in self.dead:
            return True
        return any(r in EXECUTION_GAPS and start <= transact_ns <= end for r, start, end, _ in self.gaps)


def _visible_at(stored: Stored, committed: bool) -> int:
    """The cluster serial from which a consumer of the view saw the record."""
    transaction = stored.transaction
    return transaction.ended_serial if committed and transaction is not None else stored.serial


def _view(outcome: Outcome, *, committed: bool = True) -> _View:
    """The venue's journal, and Kafka as a ``read_committed`` (or a ``read_uncommitted``) consumer sees it."""
    kafka = outcome.kafka
    read = kafka.committed_records if committed else kafka.records
    venue = outcome.venue
    journal = [
        (entry.execution.id, entry.execution.order.id, ns_from_timestamp(entry.execution.transact_time))
        for entry in venue.executions()
        if venue.in_subscription(entry.execution)
    ]
    venue_index = {execution_id: index for index, (execution_id, _, _) in enumerate(journal)}
    view = _View(journal, Counter(), defaultdict(list), set(), [], [], 0)
    visible = view.visible
    for log in read(TOPICS.executions):
        for stored in log:
            execution_id = stored.headers["execution_id"].decode()
            at = _visible_at(stored, committed)
            visible[execution_id] = min(visible.get(execution_id, at), at)
            relaxed = stored.headers.get("ordering") == b"relaxed"
            view.relaxed += relaxed
            view.counts[execution_id] += 1
            if view.counts[execution_id] == 1 and execution_id in venue_index:
                view.first[stored.key.decode()].append((venue_index[execution_id], relaxed))
    for log in read(TOPICS.dlq):
        for stored in log:
            if "execution_id" in stored.headers:
                execution_id = stored.headers["execution_id"].decode()
                view.dead.add(execution_id)
                at = _visible_at(stored, committed)
                visible[execution_id] = min(visible.get(execution_id, at), at)
    for stored in read(TOPICS.heartbeats)[0]:
        if stored.headers.get("event_type") == b"GapDetected":
            gap = GAP_DECODER(stored.value)
            view.gaps.append((gap["reason"], gap["window_start"], gap["window_end"], gap["detected_time"]))
            view.gap_visible.append(_visible_at(stored, committed))
    view.checkpoints = [CHECKPOINT_DECODER(s.value)["watermark"] for s in read(CHECKPOINTS)[0]]
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


def _orders_keep_venue_order(view: _View, seen_by: str = "") -> list[str]:  # (c)
    for order_id, occurrences in view.first.items():
        for position, earlier in enumerate(occurrences):
            for later in occurrences[position + 1 :]:
                if later[0] < earlier[0] and not (later[1] or earlier[1]):
                    first_id, second_id = view.journal[later[0]][0], view.journal[earlier[0]][0]
                    return [f"(c) order {order_id}: {first_id} landed after {second_id}{seen_by}"]
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


def _exactly_once(view: _View, outcome: Outcome) -> list[str]:  # (h)
    if not outcome.exactly_once:
        return []
    violations = []
    repeated = sorted(e for e, n in view.counts.items() if n > 1)
    if repeated:
        violations.append(
            f"(h) exactly_once: {len(repeated)} executions more than once in the read_committed view: "
            f"{[(e, view.counts[e]) for e in repeated[:5]]}"
        )
    final = view.checkpoints[-1] if view.checkpoints else None
    if final is not None:
        short = [
            e for e, _, t in view.journal if t <= final and view.counts[e] != 1 and not view.covered(e, t)
        ]
        if short:
            violations.append(
                f"(h) {len(short)} executions up to the final F are not there once: {short[:5]}"
            )
    return violations


def _zombies_are_fenced(outcome: Outcome) -> list[str]:  # (i)
    kafka = outcome.kafka
    violations = []
    newer: dict[int, int] = {}  # process -> the serial of the first initialisation of a later process
    for process, serial in kafka.initialisations:
        for older in range(process):
            newer.setdefault(older, serial)
    for topic in kafka.partitions:
        for log in kafka.records(topic):
            for stored in log:
                bound = newer.get(stored.producer, math.inf)
                if stored.serial > bound:
                    violations.append(
                        f"(i) process {stored.producer} appended to {topic} after a newer one initialised"
                    )
                elif (
                    stored.committed
                    and stored.transaction is not None
                    and stored.transaction.ended_serial > bound
                ):
                    violations.append(
                        f"(i) process {stored.producer}'s transaction committed (visible in {topic}) "
                        "after a newer one initialised"
                    )
                if violations:
                    return violations
    for process, why, had_reason in outcome.zombie_exits:
        if "fenced" not in why and not had_reason:  # a SIGTERM or a failed delivery may come first
            violations.append(f"(i) zombie process {process} stopped, but not fenced: {why}")
    violations += [
        f"(i) zombie process {p} was still running at the end: never fenced" for p in outcome.zombies_running
    ]
    return violations


def _frontier_claims_only_what_is_delivered(outcome: Outcome) -> list[str]:  # (j)
    view = _view(outcome, committed=outcome.exactly_once)
    journal = sorted(view.journal, key=lambda entry: entry[2])
    times = [t for _, _, t in journal]
    worst: list[tuple[int, str]] = []  # prefix maximum of the serial each execution was visible from
    latest: tuple[int, str] = (-1, "")
    for execution_id, _, transact_ns in journal:
        covering = [  # in Kafka, or in the DLQ, or in a declared gap: whichever came first
            serial
            for (reason, start, end, _), serial in zip(view.gaps, view.gap_visible, strict=True)
            if reason in EXECUTION_GAPS and start <= transact_ns <= end
        ]
        at = min([view.visible.get(execution_id, math.inf), *covering])
        latest = max(latest, (at, execution_id))  # type: ignore[arg-type]
        worst.append(latest)
    delivered = "committed" if outcome.exactly_once else "appended"
    for serial, frontier in outcome.frontier_claims:
        # Strictly before F: a second execution stamped exactly F may still be on its way when the
        # first one moves the watermark to F (one venue time, two fills, two partitions); the
        # resume's margin re-reads it. (a) checks "at or before" on what Kafka holds in the end.
        index = bisect.bisect_left(times, frontier)
        if index and worst[index - 1][0] > serial:
            return [f"(j) F moved to {frontier} before {worst[index - 1][1]} (before it) was {delivered}"]
    return []


def check(outcome: Outcome) -> tuple[list[str], Figures]:
    """Every violation (empty when the schedule is clean), and the figures."""
    view = _view(outcome)
    uncommitted = _view(outcome, committed=False)
    violations = [
        *_every_checkpoint_is_true(view),
        *_everything_arrives(view, outcome),
        *_orders_keep_venue_order(view),
        *_orders_keep_venue_order(uncommitted, " (read_uncommitted)"),
        *_duplicates_are_explained(view, outcome),
        *_frontier_never_goes_back(view),
        *_gaps_only_when_rest_failed(view, outcome),
        *_caught_up_reads_streaming(outcome),
        *_exactly_once(view, outcome),
        *_zombies_are_fenced(outcome),
        *_frontier_claims_only_what_is_delivered(outcome),
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
        exactly_once=outcome.exactly_once,
        duplicates_uncommitted=sum(n - 1 for n in uncommitted.counts.values() if n > 1),
        aborted=outcome.kafka.aborted_records,
        commits=outcome.commits,
        zombies=outcome.zombies,
        fenced=sum(1 for _, why, _ in outcome.zombie_exits if "fenced" in why),
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
