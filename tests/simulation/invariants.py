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
    bound was passed (``ordering: relaxed``), in both views; an execution inside a declared
    ``dropcopy_resume_refused`` gap may come later than newer ones of its order (the gap record said
    its window is unproven; Drop Copy's records after such a gap are marked while they know it);
(d) duplicates only where a crash left records in flight, or where the venue itself re-sent one
    (a Drop Copy execution re-sent before a resumed token is not one: the start's dedup seed reaches
    ``dropcopy_resend_s`` before the token's time);
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
    declared gap by then;
(k) Drop Copy: a checkpoint's resume token claims only what the mode delivers: when the checkpoint was
    committed (``exactly_once``) or appended (``at_least_once``), every firm execution Drop Copy
    covers up to the token's position already was, or was dead-lettered, or is in a declared
    ``dropcopy_resume_refused`` gap (so a restart that replays from the token skips nothing); with
    the order stream beside it, every such firm execution is in Kafka (or the DLQ, or such a gap) once
    the connector caught up, and those up to the final F in any case; and a
    ``dropcopy_resume_refused`` gap only when the venue refused a resume time.

The sources (``venue.sources``) change what the journal is. With the order stream a source, it is the
configured user's executions the subscription covers, and F is the order stream's: (a)-(j) hold as
they always did (Drop Copy's copies of the user's executions are deduplicated against the order
stream's; (d) and (h) count every execution ID across both), and (k) is about the firm's. With Drop
Copy alone, the journal is every firm execution Drop Copy covers (every user's: Drop Copy is
firm-wide, filtered by symbol only) in firm order, F follows Drop Copy, and a
``dropcopy_resume_refused`` gap declares its window as a REST gap does: (a), (b), (h) and (j) are
about the firm's executions. Duplicates (d): the venue's re-sends of one execution on Drop Copy
(``duplicate_rate``) are the venue's, like the order stream's; the executions a resume by token
re-sends (``dropcopy_resend_on_resume``) are not: dedup and its seed must drop them.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from connector.core.backfill_plan import GapReason
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.venue_time import NANOS_PER_SECOND, ns_from_timestamp
from connector.kafka.encoding import SingleObjectDecoder
from connector.simulator.dropcopy import ResumeTokens
from tests.simulation.kafka import Stored
from tests.simulation.world import CHECKPOINTS, RETRY_BUDGET_S, Outcome, Sources
from tests.venue_strategies import TOPICS

GAP_DECODER = SingleObjectDecoder(
    [schema_dict(RecordType.GAP_DETECTED), schema_dict(RecordType.CONNECTOR_HEARTBEAT)]
)
CHECKPOINT_DECODER = SingleObjectDecoder([schema_dict(RecordType.CHECKPOINT)])
EXECUTION_GAPS = frozenset({"rest_exhausted", "beyond_retention"})
DROPCOPY_GAPS = frozenset({GapReason.DROPCOPY_RESUME_REFUSED.value})


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
    sources: Sources = Sources.ORDERS
    firm_executions: int = 0  # that Drop Copy covers (0 without Drop Copy)
    dropcopy_gaps: int = 0
    token_refusals: int = 0  # resume tokens the venue refused (then a time, or live)


@dataclass(slots=True)
class _View:
    """What the venue produced and what Kafka holds, read once."""

    journal: list[tuple[str, str, int]]  # (execution id, order id, transact time), venue order
    counts: Counter[str]  # execution id -> copies in the executions topic
    # order -> first occurrences (venue index, relaxed, published by Drop Copy)
    first: dict[str, list[tuple[int, bool, bool]]]
    dead: set[str]
    gaps: list[tuple[str, int, int, int]]  # (reason, window start, window end, detected)
    checkpoints: list[int]
    relaxed: int
    visible: dict[str, int] = field(default_factory=dict)  # execution id -> cluster serial it was visible
    gap_visible: list[int] = field(default_factory=list)  # per gap, the serial it was visible
    gap_reasons: frozenset[str] = EXECUTION_GAPS  # the gaps that declare the journal's executions
    # Drop Copy: (execution id, transact time, firm position) of each firm execution it covers
    firm: list[tuple[str, int, int]] = field(default_factory=list)
    token_claims: list[tuple[int, int]] = field(
        default_factory=list
    )  # per checkpoint token: (position, serial)

    def covered(self, execution_id: str, transact_ns: int, reasons: frozenset[str] | None = None) -> bool:
        """In Kafka, in the DLQ, or inside a declared gap of executions (of ``reasons``: the journal's)."""
        if self.counts[execution_id] or execution_id in self.dead:
            return True
        reasons = self.gap_reasons if reasons is None else reasons
        return any(r in reasons and start <= transact_ns <= end for r, start, end, _ in self.gaps)


def _visible_at(stored: Stored, committed: bool) -> int:
    """The cluster serial from which a consumer of the view saw the record."""
    transaction = stored.transaction
    return transaction.ended_serial if committed and transaction is not None else stored.serial


def _journals(outcome: Outcome) -> tuple[list[tuple[str, str, int]], list[tuple[str, int, int]]]:
    """The journal the invariants check (see the module docstring), and the firm's executions of Drop Copy."""
    venue = outcome.venue
    sources = outcome.sources
    firm_entries = venue.firm_log().entries() if sources.dropcopy else ()
    firm = [
        (entry.execution.id, ns_from_timestamp(entry.execution.transact_time), entry.position)
        for entry in firm_entries
        if venue.in_dropcopy(entry.execution)
    ]
    executions = (
        [entry.execution for entry in venue.executions() if venue.in_subscription(entry.execution)]
        if sources.order_stream
        else [entry.execution for entry in firm_entries if venue.in_dropcopy(entry.execution)]
    )  # Drop Copy alone: the firm's executions, in firm order
    journal = [(e.id, e.order.id, ns_from_timestamp(e.transact_time)) for e in executions]
    return journal, firm


def _view(outcome: Outcome, *, committed: bool = True) -> _View:
    """The venue's journal, and Kafka as a ``read_committed`` (or a ``read_uncommitted``) consumer sees it."""
    kafka = outcome.kafka
    read = kafka.committed_records if committed else kafka.records
    sources = outcome.sources
    journal, firm = _journals(outcome)
    venue_index = {execution_id: index for index, (execution_id, _, _) in enumerate(journal)}
    view = _View(journal, Counter(), defaultdict(list), set(), [], [], 0, firm=firm)
    if not sources.order_stream:
        view.gap_reasons = EXECUTION_GAPS | DROPCOPY_GAPS
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
                from_dropcopy = stored.headers.get("source") == b"drop_copy"
                view.first[stored.key.decode()].append((venue_index[execution_id], relaxed, from_dropcopy))
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
    for stored in read(CHECKPOINTS)[0]:
        checkpoint = CHECKPOINT_DECODER(stored.value)
        view.checkpoints.append(checkpoint["watermark"])
        token = checkpoint.get("dropcopy_resume_token")
        if token:
            view.token_claims.append((ResumeTokens.position_of(token), _visible_at(stored, committed)))
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
    # An execution inside a declared Drop Copy gap may come later (the order stream's backfill, or a
    # replay once the venue replays again) after newer ones of its order: the gap record said so.
    dropcopy_gaps = [(start, end) for reason, start, end, _ in view.gaps if reason in DROPCOPY_GAPS]
    for order_id, occurrences in view.first.items():
        for position, earlier in enumerate(occurrences):
            for later in occurrences[position + 1 :]:
                if later[0] < earlier[0] and not (later[1] or earlier[1]):
                    first_id, _, transact_ns = view.journal[later[0]]
                    if any(start <= transact_ns <= end for start, end in dropcopy_gaps):
                        continue
                    second_id = view.journal[earlier[0]][0]
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


def _frontier_claims_only_what_is_delivered(view: _View, outcome: Outcome) -> list[str]:  # (j)
    """``view``: what the mode delivers (read_committed in ``exactly_once``, else read_uncommitted)."""
    journal = sorted(view.journal, key=lambda entry: entry[2])
    times = [t for _, _, t in journal]
    worst: list[tuple[int, str]] = []  # prefix maximum of the serial each execution was visible from
    latest: tuple[int, str] = (-1, "")
    for execution_id, _, transact_ns in journal:
        covering = [  # in Kafka, or in the DLQ, or in a declared gap: whichever came first
            serial
            for (reason, start, end, _), serial in zip(view.gaps, view.gap_visible, strict=True)
            if reason in view.gap_reasons and start <= transact_ns <= end
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


def _dropcopy_claims_only_what_is_delivered(
    view: _View, delivered: _View, outcome: Outcome
) -> list[str]:  # (k)
    """``view``: read_committed; ``delivered``: what the mode delivers (as for (j))."""
    if not outcome.sources.dropcopy:
        return []
    violations = []
    by_position = sorted(delivered.firm, key=lambda entry: entry[2])
    positions = [position for _, _, position in by_position]
    worst: list[tuple[float, str]] = []  # prefix maximum of the serial each was delivered (or declared)
    latest: tuple[float, str] = (-1, "")
    for execution_id, transact_ns, _position in by_position:
        covering = [
            serial
            for (reason, start, end, _), serial in zip(delivered.gaps, delivered.gap_visible, strict=True)
            if reason in DROPCOPY_GAPS and start <= transact_ns <= end
        ]
        latest = max(latest, (min([delivered.visible.get(execution_id, math.inf), *covering]), execution_id))
        worst.append(latest)
    mode = "committed" if outcome.exactly_once else "appended"
    for position, serial in delivered.token_claims:
        index = bisect.bisect_right(positions, position)
        if index and worst[index - 1][0] > serial:
            violations.append(
                f"(k) a checkpoint's Drop Copy token claims position {position} before "
                f"{worst[index - 1][1]} (at or before it) was {mode}"
            )
            break
    if outcome.sources.order_stream:
        final = view.checkpoints[-1] if view.checkpoints else -1
        missing = [
            e
            for e, t, _ in view.firm
            if (t <= final or (outcome.caught_up and t >= outcome.start_from_ns))
            and not view.covered(e, t, DROPCOPY_GAPS)
        ]
        if missing:
            violations.append(
                f"(k) {len(missing)} firm executions Drop Copy carries never reached Kafka: {missing[:5]}"
            )
    if any(reason in DROPCOPY_GAPS for reason, *_ in view.gaps) and not outcome.venue.time_refusals:
        violations.append("(k) a dropcopy_resume_refused gap, but the venue never refused a resume time")
    return violations


def check(outcome: Outcome) -> tuple[list[str], Figures]:
    """Every violation (empty when the schedule is clean), and the figures."""
    view = _view(outcome)
    uncommitted = _view(outcome, committed=False)
    delivered = view if outcome.exactly_once else uncommitted
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
        *_frontier_claims_only_what_is_delivered(delivered, outcome),
        *_dropcopy_claims_only_what_is_delivered(view, delivered, outcome),
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
        sources=outcome.sources,
        firm_executions=len(view.firm),
        dropcopy_gaps=sum(1 for reason, *_ in view.gaps if reason in DROPCOPY_GAPS),
        token_refusals=outcome.venue.token_refusals,
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
