"""Deterministic simulation of the connector: the real engine on a virtual clock under hostile schedules.

In the manner of FoundationDB's and TigerBeetle's simulation testing: the real engine, decoder,
watermark, frontier, dedup and encoders run single-threaded on a virtual clock against a fake venue
(stream and REST, with every behaviour the venue is allowed) and a fake Kafka with librdkafka's
semantics, with crashes at random points. A seeded generator picks each schedule; after it, the
invariants of DESIGN.md §4 are checked. ``python -m tests.simulation --seed N`` replays one schedule.
"""
