"""Deterministic simulation of the connector: the real engine on a virtual clock under hostile schedules.

In the manner of FoundationDB's and TigerBeetle's simulation testing: the real engine, decoder,
watermark, frontier, dedup, encoders and transactional sink run single-threaded on a virtual clock
against a fake venue (stream and REST, with every behaviour the venue is allowed) and a fake Kafka
with librdkafka's semantics and the broker's transactions (epochs, abort at ``init_transactions``,
fencing, ``read_committed`` readers), with crashes at random points and, in some schedules, a second
process started beside a live one (a zombie the newer one must fence). A seeded generator picks each
schedule, in ``exactly_once`` or ``at_least_once`` mode; after it, the invariants of DESIGN.md §4
are checked on what a ``read_committed`` consumer sees. ``python -m tests.simulation --seed N``
replays one schedule.
"""
