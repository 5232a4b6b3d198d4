"""``--log-format json``: one JSON object per log line, for log shippers; text stays the default."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connector.cli import build_parser, main
from connector.observability.log_format import JsonLogFormatter


def record(message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    info = sys.exc_info() if exc_info else None
    return logging.LogRecord("connector.test", logging.WARNING, __file__, 1, message, args, info)


def test_a_record_is_one_line_of_json() -> None:
    line = JsonLogFormatter().format(record("delivered %d records to %s\nnext line", 3, "pmx.orders"))
    assert "\n" not in line
    document = json.loads(line)
    assert document["message"] == "delivered 3 records to pmx.orders\nnext line"
    assert document["level"] == "WARNING" and document["logger"] == "connector.test"
    assert document["time"].endswith("+00:00")


def test_an_exception_travels_inside_the_object() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        line = JsonLogFormatter().format(record("failed", exc_info=True))
    document = json.loads(line)
    assert "ValueError: broken" in document["exception"]
    assert document["exception"].startswith("Traceback")


def test_text_is_the_default_and_json_the_option() -> None:
    assert build_parser("schemas").parse_args(["schemas"]).log_format == "text"
    assert build_parser("schemas").parse_args(["--log-format", "json", "schemas"]).log_format == "json"
    with pytest.raises(SystemExit):
        build_parser("schemas").parse_args(["--log-format", "xml", "schemas"])


@contextmanager
def bare_root_logger() -> Iterator[None]:
    """The root logger without pytest's handlers, so the CLI's own configuration takes effect."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved
        root.setLevel(level)


def test_the_cli_logs_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with bare_root_logger():
        assert main(["--log-format", "json", "schemas", "--record", "Checkpoint"]) == 0
        logging.getLogger("connector.example").info("watermark at %s", "2026-01-02T03:04:05Z")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["watermark at 2026-01-02T03:04:05Z"]
