"""``pmx-connector simulator`` as a process: ready file, client key, a stream, clean exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator import VenueEndpoints
from tests.simulator_fixtures import make_assertion, open_stream, request_token, search

REPO = Path(__file__).resolve().parents[2]


def simulator_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "connector", "simulator", *flags]


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"simulator exited early with {process.returncode}: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("the simulator wrote no ready file in time")
        time.sleep(0.05)


def test_cli_serves_a_stream_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    ready, key, journal = tmp_path / "ready.json", tmp_path / "client.pem", tmp_path / "journal.jsonl"
    process = subprocess.Popen(
        simulator_command(
            "--grpc-port", "0", "--http-port", "0", "--ready-file", str(ready), "--client-key-out", str(key),
            "--journal", str(journal), "--heartbeat-interval", "0.2", "--rate", "200",
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_file(ready, process)
        info = json.loads(ready.read_text())
        assert set(info) == {
            "grpc_target", "rest_url", "token_url", "audience", "client_id", "participant_id", "control_url",
        }  # fmt: skip
        assert info["token_url"] == info["rest_url"] + "/oauth/token"
        assert info["audience"] == info["rest_url"]
        assert info["client_id"] == "pmx-sim-client"
        assert info["participant_id"] == "firms/SIM/users/connector"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        endpoints = VenueEndpoints(**info)
        response = request_token(endpoints, make_assertion(key.read_bytes(), endpoints))
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        with grpc.insecure_channel(endpoints.grpc_target) as channel:
            call = open_stream(channel, endpoints, token)
            kinds = []
            for message in call:
                kinds.append(message.WhichOneof("event"))
                if "heartbeat" in kinds and "update" in kinds:
                    break
            call.cancel()
        assert kinds[0] == "snapshot"
        assert search(endpoints, token, "executions", {"pageSize": 5}).status_code == 200
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "venue simulator ready" in stdout
    assert "venue simulator stopped" in stdout
    assert not ready.exists()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines and lines[0]["seq"] == 1
    assert all(line["kind"] in {"execution", "cancel_reject"} for line in lines)


def test_cli_registers_an_existing_public_key_and_takes_fault_flags(tmp_path: Path) -> None:
    from connector.simulator.tokens import generate_client_key

    private_pem, public_pem = generate_client_key()
    public = tmp_path / "client.pub"
    public.write_bytes(public_pem)
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        simulator_command(
            "--ready-file", str(ready), "--client-public-key", str(public), "--rate", "0",
            "--fault-end-stream-after-messages", "1", "--fault-end-stream-status", "internal",
            "--no-rest-rate-limit",
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_file(ready, process)
        endpoints = VenueEndpoints(**json.loads(ready.read_text()))
        token = request_token(endpoints, make_assertion(private_pem, endpoints)).json()["access_token"]
        with grpc.insecure_channel(endpoints.grpc_target) as channel:
            call = open_stream(channel, endpoints, token, trading_pb2.CreateOrderSubscriptionRequest())
            with pytest.raises(grpc.RpcError) as caught:
                list(call)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0


@pytest.mark.parametrize(
    "flags",
    [["--rate", "-1"], ["--fault-duplicate-rate", "2"], ["--grpc-port", "70000"], ["--accounts", "A1"]],
    ids=["negative-rate", "rate-above-one", "bad-port", "bad-account"],
)
def test_cli_bad_flags_exit_2(flags: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        simulator_command(*flags), cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2, result.stderr


def test_cli_help_gives_every_flag_a_default() -> None:
    result = subprocess.run(
        simulator_command("--help"), cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    flags = ("--grpc-port", "--seed", "--rate", "--heartbeat-interval", "--journal", "--stream-limit")
    for flag in (*flags, "--token-lifetime", "--rest-rate-limit", "--fault-stall", "--fault-refuse-streams"):
        assert flag in help_text
    assert help_text.count("(default:") >= 30
