"""One leader election as a process, for the takeover tests (SIGKILL, SIGSTOP) on the real cluster.

::

    python -m tests.leader_probe --bootstrap 127.0.0.1:9092 --topic t --group g

prints one JSON line per change of state on stdout (the first, ``standby``, once the election has
started): ``{"leader": true, "state": "leader", "t": <wall time>, "member_id": ...}``. When leadership
is lost, or Kafka refuses the election, it prints that line, then one line on stderr saying why, and
exits 1 (as the connector does). SIGTERM or SIGINT leaves the group and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time

from connector.kafka.leadership import SESSION_TIMEOUT_S, ElectionState, LeaderElection, Leadership


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--session-timeout-s", type=float, default=SESSION_TIMEOUT_S)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    changes: queue.Queue[Leadership] = queue.Queue()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    election = LeaderElection(
        args.bootstrap,
        {"reconnect.backoff.max.ms": 500},
        args.topic,
        args.group,
        session_timeout_s=args.session_timeout_s,
        on_change=changes.put,
    )
    election.start()
    try:
        say(election.describe())
        while not stopping.is_set():
            try:
                change = changes.get(timeout=0.1)
            except queue.Empty:
                continue
            say(change)
            if change.state in {ElectionState.LOST, ElectionState.FAILED}:
                print(f"leader_probe: {change.state.value}: {change.reason}", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        election.stop()


def say(leadership: Leadership) -> None:
    line = {
        "leader": leadership.leader,
        "state": leadership.state.value,
        "t": time.time(),
        "member_id": leadership.member_id,
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
