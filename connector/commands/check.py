"""``pmx-connector check``: try every outside dependency once and print a ✓/✗ line per step.

Steps, each needing the one before: the settings are valid; the private key reads; the token
endpoint issues a token; the venue opens a ``snapshot_only`` stream (``venue.sources`` holds
``order_stream``) and a live Drop Copy stream (it holds ``drop_copy``: the client has the
``read:dropcopy`` scope, the firm filter is accepted); Kafka answers and every topic exists.
Nothing is written anywhere. Exit code 0 when every step passes, 1 otherwise (2 for bad settings,
as for every command).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from rich.console import Console

from connector.config import Settings, load_settings
from connector.engine.ports import DropCopyResume, StreamEnd
from connector.errors import ConnectorError
from connector.kafka.topics import check_topics, topic_names
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.dropcopy import DropCopyClient
from connector.venue.stream import GrpcVenueStream, OrderStreamClient, StreamEndedError, open_channel, read

SNAPSHOT_TIMEOUT_S: Final = 30.0
DROPCOPY_WAIT_S: Final = 3.0  # a refusal comes at once; a quiet firm sends nothing: accepted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``check``'s flags."""
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="settings file (plus PMX_CONNECTOR_* variables)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the checks; return 0 when all pass."""
    console = Console(highlight=False, soft_wrap=True)
    settings = load_settings(args.config)
    console.print("[green]✓[/] configuration is valid")
    tokens: list[TokenProvider] = []

    def private_key() -> str:
        key = load_private_key(settings.auth.private_key_file)
        tokens.append(
            TokenProvider(
                key=key,
                client_id=settings.auth.client_id,
                token_url=settings.auth.token_url,
                audience=settings.auth.audience,
                ca_file=settings.venue.tls_ca_file,
            )
        )
        return f"private key {settings.auth.private_key_file} is an RSA key of {key.key_size} bits"

    def token() -> str:
        tokens[0].token()
        return f"token endpoint {settings.auth.token_url} issued a token to {settings.auth.client_id}"

    steps: list[tuple[str, Callable[[], str]]] = [("private key", private_key), ("token", token)]
    if settings.venue.order_stream:
        steps.append(("venue stream", lambda: _snapshot(settings, tokens[0])))
    if settings.venue.drop_copy:
        steps.append(("drop copy stream", lambda: _dropcopy(settings, tokens[0])))
    steps.append(("kafka", lambda: _kafka(settings)))
    failed = False
    for name, step in steps:
        if failed:
            console.print(f"[yellow]-[/] {name}: skipped")
            continue
        try:
            console.print(f"[green]✓[/] {step()}")
        except (ConnectorError, StreamEndedError) as exc:
            console.print(f"[red]✗[/] {name}: {exc}")
            failed = True
    return 1 if failed else 0


def _snapshot(settings: Settings, tokens: TokenProvider) -> str:
    channel = open_channel(settings.venue)
    try:
        stream = OrderStreamClient(channel, settings.venue, tokens.token).call(snapshot_only=True)
        orders = 0
        session = ""
        try:
            for response in read(stream):
                session = session or response.session_id
                if response.HasField("snapshot"):
                    orders += len(response.snapshot.orders)
                    stream.cancel()
                    break
        except StreamEndedError as ended:
            if ended.end.status not in {"EOF", "CANCELLED"}:
                raise
        return (
            f"venue {settings.venue.grpc_target} sent a snapshot of {orders} open orders (session {session})"
        )
    finally:
        channel.close()


def _dropcopy(settings: Settings, tokens: TokenProvider) -> str:
    channel = open_channel(settings.venue)
    try:
        stream = GrpcVenueStream(
            DropCopyClient(channel, settings.venue, tokens.token).raw_call(DropCopyResume()), lambda: None
        )
        deadline = time.monotonic() + DROPCOPY_WAIT_S
        item = None
        while item is None and time.monotonic() < deadline:
            item = stream.take()
            time.sleep(0.05)
        stream.cancel()
        if isinstance(item, StreamEnd):
            raise StreamEndedError(item)
        where = f"venue {settings.venue.grpc_target}"
        if item is None:
            return (
                f"{where} accepted the drop copy subscription (no execution within {DROPCOPY_WAIT_S:.0f} s)"
            )
        return f"{where} accepted the drop copy subscription and sent a batch"
    finally:
        channel.close()


def _kafka(settings: Settings) -> str:
    topics = list(topic_names(settings).values())
    check_topics(settings, topics, create=False)
    return f"Kafka {settings.kafka.bootstrap_servers} answers and has all {len(topics)} topics"
