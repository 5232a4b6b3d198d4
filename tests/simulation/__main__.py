"""Run simulated schedules: ``python -m tests.simulation [--seed N | --schedules K] [--verbose]``.

Each schedule is drawn from its seed and checked against the invariants (tests/simulation/invariants.py).
A failure prints the schedule and the one command that replays it. ``--processes`` runs seeds in
parallel processes; ``--message-timeout S`` runs with a finite producer timeout (the reverted fix).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tests.simulation.mutations import MUTATIONS
from tests.simulation.runner import apply_mutation, run_many, run_one


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__)
    parser.add_argument("--seed", type=int, help="replay one schedule, with its description and figures")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed of a batch (default 0)")
    parser.add_argument("--schedules", type=int, default=200, help="how many seeds in a batch (default 200)")
    parser.add_argument("--processes", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--message-timeout", type=float, default=None, help="a finite producer timeout (s)")
    parser.add_argument(
        "--mutation", choices=sorted(MUTATIONS), help="revert one fix (tests/simulation/mutations.py)"
    )
    parser.add_argument("--verbose", action="store_true", help="the engine's log at INFO")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="%(message)s")
    if args.seed is not None:
        apply_mutation(args.mutation)
        result = run_one(args.seed, message_timeout_s=args.message_timeout)
        print(result.description)
        print(result.figures)
        for violation in result.violations:
            print(violation)
        return 1 if result.violations else 0
    started = time.monotonic()
    summary = run_many(
        range(args.first_seed, args.first_seed + args.schedules),
        processes=args.processes,
        message_timeout_s=args.message_timeout,
        mutation=args.mutation,
        log_level=logging.INFO if args.verbose else logging.CRITICAL,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(summary.report(time.monotonic() - started))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
