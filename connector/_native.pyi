# Type stub of the compiled module connector._native (native/python/src/lib.rs), built by
# setuptools-rust from native/. Use connector.core.transcoder, which builds the plan and types the
# results; this is its only caller.
from typing import Any

class DecodeError(ValueError):
    """Bytes that are not a valid protobuf encoding of the expected venue message."""

class Transcoder:
    def __init__(
        self,
        plan: str,
        prefixes: tuple[bytes, bytes, bytes],
        connector: str,
        kinds: tuple[Any, Any, Any, Any],
    ) -> None: ...
    def response(
        self, data: bytes, received_time_ns: int, source: int
    ) -> tuple[
        Any,
        str,
        int | None,
        list[tuple[str, bytes, int | None, bytes]],
        str | None,
        int,
        list[tuple[bytes, bytes]],
        tuple[bytes, int | None, bytes] | None,
        list[tuple[str, int, bytes, bytes, str, str]],
    ]: ...
    def execution(
        self,
        data: bytes,
        source: int,
        session_id: str,
        processed_sent_time_ns: int | None,
        received_time_ns: int,
    ) -> tuple[str, bytes, int | None, bytes] | tuple[str, int, bytes, bytes, str, str]: ...
