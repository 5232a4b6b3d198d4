"""Time for the simulator: the injectable clock type and conversions of aware UTC datetimes.

Every timestamp the simulator produces comes from a :data:`Clock`, so the pure order flow can be
driven by a fake clock in tests and by the wall clock in the running venue.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

from google.protobuf import timestamp_pb2

__all__ = ["Clock", "from_timestamp", "rfc3339", "to_timestamp", "utc_now"]

Clock: TypeAlias = Callable[[], datetime]
"""A function returning the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    """Return the wall-clock time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """Convert an aware datetime into a protobuf Timestamp.

    Args:
        moment: An aware datetime.

    Returns:
        The same instant as a Timestamp.
    """
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    """Convert a protobuf Timestamp into an aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with microseconds and a ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
