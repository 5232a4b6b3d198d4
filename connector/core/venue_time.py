"""Venue time: the one home for converting the venue's timestamps and rendering them (pure).

The venue's times are ``google.protobuf.Timestamp`` values on the wire and RFC 3339 strings over REST;
inside the connector every time is an integer count of nanoseconds since the Unix epoch (UTC), which
is also what the Avro ``timestamp-nanos`` fields hold, so no float rounding ever moves an execution
across a window boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

NANOS_PER_SECOND: Final = 1_000_000_000
NANOS_PER_MILLI: Final = 1_000_000
NANOS_PER_MICRO: Final = 1_000


def seconds_to_ns(seconds: float) -> int:
    """A duration in seconds as integer nanoseconds."""
    return round(seconds * NANOS_PER_SECOND)


def ns_from_timestamp(stamp: Any) -> int:
    """A ``google.protobuf.Timestamp`` (any object with ``seconds`` and ``nanos``) as epoch nanoseconds."""
    return int(stamp.seconds) * NANOS_PER_SECOND + int(stamp.nanos)


def millis_from_ns(nanos: int | None) -> int | None:
    """Epoch nanoseconds as epoch milliseconds (a Kafka record timestamp); None stays None."""
    return None if nanos is None else nanos // NANOS_PER_MILLI


def iso_from_ns(nanos: int | None) -> str | None:
    """Epoch nanoseconds as an RFC 3339 UTC time with microseconds (for logs and ``/status``)."""
    if nanos is None:
        return None
    seconds, fraction = divmod(nanos, NANOS_PER_SECOND)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=fraction // NANOS_PER_MICRO)
    return moment.isoformat().replace("+00:00", "Z")


def rfc3339_ns(nanos: int) -> str:
    """Epoch nanoseconds as RFC 3339 UTC with all nine fraction digits (what grpc-gateway accepts)."""
    seconds, fraction = divmod(nanos, NANOS_PER_SECOND)
    moment = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"


def ns_from_iso(value: str) -> int:
    """Parse an ISO 8601 time with a UTC offset (``Z`` allowed) into epoch nanoseconds.

    Raises:
        ValueError: not an ISO 8601 time, or one without an offset.
    """
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {value!r}"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        msg = f"the time needs a UTC offset (e.g. 'Z'), got {value!r}"
        raise ValueError(msg)
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()) * NANOS_PER_SECOND + moment.microsecond * NANOS_PER_MICRO
