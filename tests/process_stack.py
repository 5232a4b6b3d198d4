"""Helpers for tests that run the connector, the simulator and dev-kafka as real processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "connector", *args], stdout=sink, stderr=subprocess.STDOUT
        )


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{path} not written in {timeout_s} s"
        time.sleep(0.1)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def poll_http(url: str, predicate: Any, timeout_s: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    last: requests.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=2)
            if predicate(last):
                return last
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never satisfied the condition; last answer: {last.text if last else None}")


def metric_value(exposition: str, series: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def nanos(rfc3339: str) -> int:
    moment = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def write_connector_config(
    path: Path,
    venue: dict[str, Any],
    bootstrap_servers: str,
    http_port: int,
    *,
    key_file: Path,
    sections: dict[str, dict[str, Any]],
) -> Path:
    """Write a connector config for a simulator (its ready file) and a broker; ``sections`` merge in."""
    config: dict[str, dict[str, Any]] = {
        "venue": {
            "grpc_target": venue["grpc_target"],
            "rest_url": venue["rest_url"],
            "insecure": True,
            "participant_id": venue["participant_id"],
        },
        "auth": {
            "token_url": venue["token_url"],
            "client_id": venue["client_id"],
            "private_key_file": str(key_file),
            "audience": venue["audience"],
        },
        "kafka": {"bootstrap_servers": bootstrap_servers},
        "http": {"listen": f"127.0.0.1:{http_port}"},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path
