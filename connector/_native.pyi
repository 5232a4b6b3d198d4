# Type stub of the compiled module connector._native (native/python/src/lib.rs), built by
# setuptools-rust from native/. Use connector.core.transcoder, which builds the plan and passes the
# classes the results are made of; it is this module's only caller.
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
        sources: tuple[Any, Any, Any, Any],
        response_class: type[Any],
        dead_letter_class: type[Any],
    ) -> None: ...
    def response(self, data: bytes, received_time_ns: int, source: Any = None) -> Any: ...
    def execution(
        self,
        data: bytes,
        source: Any,
        session_id: str,
        processed_sent_time_ns: int | None,
        received_time_ns: int,
    ) -> Any: ...
