"""The engine's CPU per execution, in-process: the real service path on the benchmark's frames.

``python tests/perf/engine_profile.py`` builds the engine exactly as ``pmx-connector run`` does
(``commands.composition.build_engine``: the decoder with the native transcoder, dedup, the
watermark, the outbox, :class:`~connector.kafka.publisher.KafkaPublisher` with a real
confluent-kafka producer and its delivery callbacks, the Prometheus metrics; the garbage-collector
settings and the doorbell of ``run``) and runs it with ``ConnectorService.run``, as ``run`` does.
The stream is the production reader (:class:`~connector.venue.stream.GrpcVenueStream`: a thread, a
bounded queue, the doorbell rung per response) over a stand-in call that yields raw response bytes
from :class:`connector.simulator.bench_stream.FrameBuilder` (5 executions per update, a heartbeat
every 1,000 updates): no gRPC and no venue in this process. Kafka is librdkafka's mock cluster
(:class:`connector.embedded.EmbeddedKafka`, three brokers, three partitions per topic) in a *child*
process, so its broker threads are not counted.

It prints one JSON line: ``cpu_us_per_execution`` (``time.process_time``: this whole process, the
producer's librdkafka threads included, as the budget counts it) and ``engine_thread_us_per_execution``
(``time.thread_time`` of the thread that steps the engine: the Python path plus the ``produce``
and ``poll`` calls it makes; the reader thread is in the first, not here), from the first measured
frame until Kafka acknowledged the last record;
then ``raw_cpu_us_per_record``: the same number of records, each a copy of one of the engine's own
execution values with its own key, produced by a bare producer with the connector's configuration
(``poll(0)`` after each, as ``tests/perf/raw_producer.py`` does) to a topic of its own in the same
cluster, and ``ratio_to_raw`` (the budget: at most 2.5). Only ratios between runs made back to back
on the same machine mean anything.

Options: ``--updates N`` measured updates (default 20,000: 100,000 executions) after ``--warmup``
updates; ``--rate R`` feeds them at R executions per second, below saturation (default: as fast as
the engine takes them, the reader's queue full);
``--delivery exactly_once`` measures that mode (default ``at_least_once``);
``--full-dedup`` fills the recent-execution-ID set to its capacity first (the steady
state of a connector that has run for ``recent_execution_ids`` executions, or was seeded from a
full topic); ``--cprofile FILE`` writes a cProfile of the measured part (it slows the run: for
where the time goes, not for the figures). For a sampling profile without that distortion run it
under ``py-spy record --native -o profile.txt -f raw -- python tests/perf/engine_profile.py``.

The script needs only ``connector`` (not the tests package), so it can measure another checkout's
engine: ``PYTHONPATH=/path/to/checkout python tests/perf/engine_profile.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from connector.commands import composition
from connector.commands.composition import build_engine, subscription_key
from connector.config import Settings
from connector.engine.service import ConnectorService
from connector.engine.status import Phase, ServiceStatus
from connector.kafka.publisher import KafkaPublisher
from connector.kafka.topics import topic_names
from connector.observability.metrics import Metrics
from connector.simulator.bench_stream import FrameBuilder
from connector.venue.stream import GrpcVenueStream
from tests.engine_fixtures import NoSearch, undialled_settings
from tests.perf import raw_producer

EXECUTIONS_PER_UPDATE = 5
HEARTBEAT_EVERY = 1000
PARTITIONS = 3
CONNECTOR = "engine-profile"
EXECUTIONS_TOPIC = "pmx.orders.executions"
RAW_TOPIC = "engine-profile.raw"


def _cluster(topics: list[str], conn: Connection) -> None:
    """The child process: a three-broker mock cluster with the topics, until told to stop."""
    from connector.embedded import EmbeddedKafka

    with EmbeddedKafka(brokers=3) as kafka:
        for topic in [*topics, RAW_TOPIC]:
            kafka.create_topic(topic, partitions=PARTITIONS, replication_factor=3)
        conn.send(kafka.bootstrap_servers)
        conn.recv()


def settings_for(bootstrap: str, folder: Path, delivery: str = "at_least_once") -> Settings:
    """The connector's settings on the mock cluster (the venue's addresses are never dialled)."""
    connector = {"name": CONNECTOR, "delivery": delivery}
    return undialled_settings(bootstrap, folder / "unused.pem", connector=connector)


def frames_for(builder: FrameBuilder, first_execution: int, updates: int) -> list[bytes]:
    """``updates`` update frames numbered on from ``first_execution``, with a heartbeat now and then."""
    frames = []
    now_ns = time.time_ns()
    for number in range(updates):
        frames.append(builder.update(first_execution + number * EXECUTIONS_PER_UPDATE, now_ns))
        if number % HEARTBEAT_EVERY == HEARTBEAT_EVERY - 1:
            frames.append(builder.heartbeat(now_ns))
    return frames


class _PlainDoorbell:
    """The engine's doorbell before it gathered wake-ups (``BuiltService._wait`` on a bare Event)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)
        self._event.clear()


class FrameCall:
    """A raw gRPC call's side of the stream: yields each phase's frames (all at once, or at a rate).

    The production reader (:class:`~connector.venue.stream.GrpcVenueStream`: a thread, a bounded
    queue, a doorbell rung after each response) reads it, so a backlog pushes back as the venue's
    stream does, and the engine is woken as in production.
    """

    def __init__(self, rate: float) -> None:
        self._interval = EXECUTIONS_PER_UPDATE / rate if rate > 0 else 0.0
        self._phases: queue.Queue[Sequence[bytes] | None] = queue.Queue()

    def feed(self, frames: Sequence[bytes] | None) -> None:
        """Send these frames next (None: end the call)."""
        self._phases.put(frames)

    def cancel(self) -> None:
        self._phases.put(None)

    def __iter__(self) -> Iterator[bytes]:
        interval = self._interval
        while (frames := self._phases.get()) is not None:
            due = time.monotonic()
            for frame in frames:
                if interval:
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    due += interval
                yield frame


class Driver:
    """Runs the engine as ``BuiltService.run`` does: ``service.run`` sleeping on the doorbell between steps.

    When every execution fed so far is acknowledged, ``on_drained`` is called on the engine's thread
    (from its wait): it returns the next phase's frames and how many executions they hold, or None
    to stop the engine.
    """

    def __init__(
        self,
        service: ConnectorService,
        publisher: KafkaPublisher,
        call: FrameCall,
        doorbell: Any,
        on_drained: Callable[[], tuple[Sequence[bytes], int] | None],
    ) -> None:
        self._service, self._publisher, self._call, self._doorbell = service, publisher, call, doorbell
        self._on_drained = on_drained
        self._expected = 0
        self._stopping = False

    def run(self, frames: Sequence[bytes], executions: int, timeout_s: float) -> None:
        """Feed ``frames`` (``executions`` of them), then what ``on_drained`` returns, until None."""
        self._expected = executions
        self._call.feed(frames)
        deadline = time.monotonic() + timeout_s
        acknowledged = self._publisher.acknowledged
        watermark = self._service.watermark

        def wait(seconds: float) -> None:
            if time.monotonic() > deadline:
                msg = f"not drained within {timeout_s:.0f} s"
                raise RuntimeError(msg)
            if (
                not self._stopping
                and acknowledged[EXECUTIONS_TOPIC] >= self._expected
                and not watermark.in_flight
            ):
                phase = self._on_drained()
                if phase is None:
                    self._stopping = True
                    self._service.request_stop()
                else:
                    frames, executions = phase
                    self._expected += executions
                    self._call.feed(frames)
            self._doorbell.wait(seconds)

        self._service.run(wait)


def raw_cpu_s(bootstrap: str, value: bytes, records: int) -> float:
    """CPU of a bare producer (the connector's configuration) producing ``records`` copies of ``value``."""
    cpu_s: float = raw_producer.main(bootstrap, RAW_TOPIC, records, value)["cpu_s"]
    return cpu_s


def measure(args: argparse.Namespace, bootstrap: str, folder: Path) -> dict[str, Any]:
    """Build the engine, warm it up, then measure the CPU of ``args.updates`` updates."""
    settings = settings_for(bootstrap, folder, args.delivery)
    metrics = Metrics(tuple(topic_names(settings).values()))
    status = ServiceStatus(connector=CONNECTOR, subscription=subscription_key(settings))
    call = FrameCall(args.rate)
    doorbell = getattr(composition, "Doorbell", _PlainDoorbell)()  # what ``build`` gives the engine
    built = build_engine(
        settings,
        open_stream=lambda: GrpcVenueStream(call, doorbell.ring),
        search=NoSearch(),
        invalidate_token=lambda: None,
        metrics=metrics,
        status=status,
    )
    # An ``Engine`` since transactions; a (service, publisher) pair on the commits before them.
    service, publisher = (built.service, built.publisher) if hasattr(built, "service") else built
    tune = getattr(composition, "tune_garbage_collection", None)  # what ``run`` does after ``build``
    if tune is not None:
        tune()
    builder = FrameBuilder("engine-profile-session", EXECUTIONS_PER_UPDATE)
    warmup = [builder.snapshot(10, time.time_ns()), *frames_for(builder, 1, args.warmup)]
    measured = frames_for(builder, 1 + args.warmup * EXECUTIONS_PER_UPDATE, args.updates)
    executions = args.updates * EXECUTIONS_PER_UPDATE
    profile = cProfile.Profile() if args.cprofile else None
    marks: dict[str, float] = {}

    def on_drained() -> tuple[Sequence[bytes], int] | None:
        if "cpu" in marks:  # the measured phase is through
            if profile is not None:
                profile.disable()
            marks["cpu"] = time.process_time() - marks["cpu"]
            marks["thread"] = time.thread_time() - marks["thread"]
            marks["wall"] = time.monotonic() - marks["wall"]
            return None
        if status.phase != Phase.STREAMING.value:
            msg = f"the engine is {status.phase}, not streaming"
            raise RuntimeError(msg)
        if args.full_dedup:
            recent = service._recent_ids  # the one set the engine deduplicates against
            for number in range(recent.capacity - len(recent)):
                recent.add(f"EX-prefill-{number:012d}")
        marks.update(cpu=time.process_time(), thread=time.thread_time(), wall=time.monotonic())
        if profile is not None:
            profile.enable()
        return measured, executions

    Driver(service, publisher, call, doorbell, on_drained).run(
        warmup, args.warmup * EXECUTIONS_PER_UPDATE, 900
    )
    if "wall" not in marks:
        msg = f"the engine stopped before the measured phase was through: {service.failure}"
        raise RuntimeError(msg)
    cpu, thread, wall = marks["cpu"], marks["thread"], marks["wall"]
    if profile is not None:
        profile.dump_stats(args.cprofile)
    produced = metrics.registry.get_sample_value
    acknowledged = produced("pmx_connector_records_produced_total", {"topic": EXECUTIONS_TOPIC})
    expected = (args.warmup + args.updates) * EXECUTIONS_PER_UPDATE
    if acknowledged != expected:
        msg = f"{acknowledged} executions acknowledged, {expected} expected"
        raise RuntimeError(msg)
    value = service.decoder.response(builder.update(1, time.time_ns()), time.time_ns()).records[0].value
    raw = raw_cpu_s(bootstrap, value, executions) if args.raw else None
    return {
        "label": args.label,
        "delivery": args.delivery,
        "full_dedup": args.full_dedup,
        "rate": args.rate,
        "executions": executions,
        "cpu_us_per_execution": round(cpu / executions * 1e6, 3),
        "engine_thread_us_per_execution": round(thread / executions * 1e6, 3),
        "wall_s": round(wall, 3),
        "raw_cpu_us_per_record": None if raw is None else round(raw / executions * 1e6, 3),
        "ratio_to_raw": None if raw is None else round(cpu / raw, 3),
    }


def main() -> None:
    """Run one measurement and print it as a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--full-dedup", action="store_true")
    parser.add_argument("--rate", type=float, default=0.0, help="executions per second (0: all at once)")
    parser.add_argument("--cprofile", default="")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--delivery",
        choices=("at_least_once", "exactly_once"),
        default="at_least_once",
        help="connector.delivery",
    )
    parser.add_argument("--no-raw", dest="raw", action="store_false", help="skip the bare producer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        topics = list(topic_names(settings_for("127.0.0.1:1", Path(folder))).values())
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        cluster = context.Process(target=_cluster, args=(topics, child), daemon=True)
        cluster.start()
        try:
            bootstrap = parent.recv()
            result = measure(args, bootstrap, Path(folder))
        finally:
            parent.send("stop")
            cluster.join(30)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
