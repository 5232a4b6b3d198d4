"""Running schedules (one, or a batch over processes) and summing up what they found."""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from tests.simulation.invariants import Figures, check
from tests.simulation.mutations import MUTATIONS
from tests.simulation.world import World, scenario


@dataclass(frozen=True, slots=True)
class Result:
    """One schedule's outcome."""

    seed: int
    violations: tuple[str, ...]
    figures: Figures | None
    description: str


def replay_command(seed: int, message_timeout_s: float | None = None, mutation: str | None = None) -> str:
    """The one command that replays a schedule."""
    extra = f" --message-timeout {message_timeout_s:g}" if message_timeout_s is not None else ""
    if mutation is not None:
        extra += f" --mutation '{mutation}'"
    return f".venv/bin/python -m tests.simulation --seed {seed}{extra}"


def run_one(seed: int, *, message_timeout_s: float | None = None) -> Result:
    """Run and check one schedule; an exception in the engine is a violation too (a bug)."""
    plan = scenario(seed, message_timeout_s=message_timeout_s)
    try:
        outcome = World(plan).run()
    except Exception:
        return Result(seed, (f"the engine raised:\n{traceback.format_exc()}",), None, plan.describe())
    violations, figures = check(outcome)
    return Result(seed, tuple(violations), figures, plan.describe())


def apply_mutation(name: str | None) -> None:
    """Revert one of the issue's fixes in this process, for good (see ``tests.simulation.mutations``)."""
    if name is None:
        return
    mutation, _timeout = MUTATIONS[name]
    mutation(pytest.MonkeyPatch()).__enter__()  # never undone: the worker process ends with it


def _worker(mutation: str | None, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(message)s")
    apply_mutation(mutation)


def _run(arguments: tuple[int, float | None]) -> Result:
    seed, timeout = arguments
    return run_one(seed, message_timeout_s=timeout)


@dataclass(slots=True)
class Summary:
    """A batch's totals."""

    schedules: int = 0
    failures: list[Result] = field(default_factory=list)
    executions: int = 0
    duplicates: int = 0
    relaxed: int = 0
    gaps: int = 0
    crashes: int = 0
    restarts: int = 0
    search_requests: int = 0
    exactly_once: int = 0  # schedules in exactly_once mode (the others: at_least_once)
    duplicates_by_mode: dict[str, list[int]] = field(
        default_factory=lambda: {"exactly_once": [0, 0], "at_least_once": [0, 0]}
    )  # mode -> [read_committed, read_uncommitted]
    aborted: int = 0
    commits: int = 0
    zombies: int = 0
    fenced: int = 0
    by_sources: dict[str, int] = field(default_factory=dict)  # venue.sources -> schedules
    failures_by_sources: dict[str, int] = field(default_factory=dict)
    firm_executions: int = 0
    dropcopy_gaps: int = 0
    token_refusals: int = 0
    message_timeout_s: float | None = None
    mutation: str | None = None

    def add(self, result: Result) -> None:
        """Count one schedule."""
        self.schedules += 1
        if result.violations:
            self.failures.append(result)
        figures = result.figures
        if figures is not None:
            self.executions += figures.executions
            self.duplicates += figures.duplicates
            self.relaxed += figures.relaxed
            self.gaps += figures.gaps
            self.crashes += figures.crashes
            self.restarts += figures.restarts
            self.search_requests += figures.search_requests
            self.exactly_once += figures.exactly_once
            mode = self.duplicates_by_mode["exactly_once" if figures.exactly_once else "at_least_once"]
            mode[0] += figures.duplicates
            mode[1] += figures.duplicates_uncommitted
            self.aborted += figures.aborted
            self.commits += figures.commits
            self.zombies += figures.zombies
            self.fenced += figures.fenced
            sources = figures.sources.value
            self.by_sources[sources] = self.by_sources.get(sources, 0) + 1
            if result.violations:
                self.failures_by_sources[sources] = self.failures_by_sources.get(sources, 0) + 1
            self.firm_executions += figures.firm_executions
            self.dropcopy_gaps += figures.dropcopy_gaps
            self.token_refusals += figures.token_refusals

    def report(self, seconds: float) -> str:
        """The batch in a few lines; each failure with its first violation and its replay command."""
        lines = [
            f"{self.schedules} schedules in {seconds:.0f} s: {len(self.failures)} with invariant violations; "
            f"{self.executions} venue executions, {self.crashes} crashes, {self.restarts} connector starts, "
            f"{self.search_requests} searches, {self.gaps} execution gaps declared, {self.duplicates} "
            f"duplicates (crash or venue re-send), {self.relaxed} records marked ordering=relaxed"
        ]
        exactly, least = self.duplicates_by_mode["exactly_once"], self.duplicates_by_mode["at_least_once"]
        lines.append(
            f"transactions: {self.exactly_once} schedules exactly_once, {self.schedules - self.exactly_once} "
            f"at_least_once; {self.commits} commits, {self.aborted} records aborted; {self.zombies} zombies, "
            f"{self.fenced} fenced; duplicates read_committed / read_uncommitted: exactly_once "
            f"{exactly[0]} / {exactly[1]}, at_least_once {least[0]} / {least[1]}"
        )
        per_sources = ", ".join(
            f"{name} {count} ({self.failures_by_sources.get(name, 0)} failing)"
            for name, count in sorted(self.by_sources.items())
        )
        lines.append(
            f"sources: {per_sources}; drop copy: {self.firm_executions} firm executions covered, "
            f"{self.token_refusals} resume tokens refused, {self.dropcopy_gaps} dropcopy_resume_refused gaps"
        )
        for failure in self.failures[:10]:
            lines.append(f"seed {failure.seed}: {failure.violations[0].splitlines()[0]}")
            lines.append(f"  replay: {replay_command(failure.seed, self.message_timeout_s, self.mutation)}")
        return "\n".join(lines)


def run_many(
    seeds: Iterable[int],
    *,
    processes: int = 2,
    message_timeout_s: float | None = None,
    mutation: str | None = None,
    progress: Callable[[str], None] = lambda _line: None,
    stop_at_first: bool = False,
    log_level: int = logging.CRITICAL,
) -> Summary:
    """Run a batch of seeds over ``processes`` processes, with one of the fixes reverted if ``mutation``.

    The workers log at ``log_level`` (by default only what is critical: thousands of schedules).

    The workers are spawned, not forked: a fork of a process that runs threads (a test session's
    gRPC servers and Kafka clients) can inherit a held lock or a signal handler and never finish.
    """
    summary = Summary(message_timeout_s=message_timeout_s, mutation=mutation)
    work = [(seed, message_timeout_s) for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_worker, initargs=(mutation, log_level)) as pool:
        for result in pool.imap_unordered(_run, work, chunksize=4):
            summary.add(result)
            if summary.schedules % 100 == 0:
                progress(f"{summary.schedules}/{len(work)} schedules, {len(summary.failures)} failing")
            if stop_at_first and summary.failures:
                pool.terminate()
                break
    return summary
