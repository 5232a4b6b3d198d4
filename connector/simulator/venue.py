"""The simulated venue as one object: builds and wires the flow, journal, token authority, gRPC and HTTP.

Use it in-process as a context manager::

    with SimulatedVenue(SimulatorConfig(seed=7, heartbeat_interval_s=0.2)) as venue:
        private_pem = venue.generate_client_key()
        print(venue.endpoints.grpc_target, venue.endpoints.token_url)
        venue.set_faults(duplicate_rate=0.1)
        venue.set_faults(hostile=True, fault_seed=42)   # every open behaviour at random, seeded
        venue.set_faults(dropcopy_resend_on_resume=3, expire_dropcopy_tokens=True)

It serves ``OrderEntryAPI.CreateOrderSubscription`` (the configured user's orders) and
``DropCopyAPI.CreateDropCopySubscription`` (the whole firm's executions: the configured user's and
``firm_users`` other users', each on accounts of its own), on one gRPC server, under one stream limit.

Nothing listens and no thread runs until :meth:`SimulatedVenue.start`; :meth:`SimulatedVenue.stop` ends
open streams (UNAVAILABLE), stops both servers and the order flow, and closes the journal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import grpc

from connector._pb.polymarket.v1 import trading_pb2
from connector.errors import RuntimeFailure
from connector.simulator.clock import Clock, utc_now
from connector.simulator.dropcopy import FirmExecution
from connector.simulator.dropcopy_service import DropCopyService, firm_of
from connector.simulator.exchange import Exchange, FirmFlow
from connector.simulator.faults import FaultBoard, FaultSettings
from connector.simulator.grpc_service import OrderStreamService, StreamSlots
from connector.simulator.http_api import RestApi, RestServer
from connector.simulator.journal import Journal
from connector.simulator.order_flow import FlowParams, OrderFlow, VenueUpdate
from connector.simulator.report_api import HttpResponse
from connector.simulator.tokens import TokenAuthority, generate_client_key

__all__ = ["DEFAULT_ACCOUNTS", "DEFAULT_SYMBOLS", "SimulatedVenue", "SimulatorConfig", "VenueEndpoints"]

_LOG: Final = logging.getLogger(__name__)

DEFAULT_ACCOUNTS: Final = ("firms/SIM/accounts/A1", "firms/SIM/accounts/A2", "firms/SIM/accounts/A3")
DEFAULT_SYMBOLS: Final = ("SIM-ELECTION-YES", "SIM-RATES-CUT-YES", "SIM-NBA-FINALS-YES", "SIM-BTC-100K-YES")
DEFAULT_CLIENT_ID: Final = "pmx-sim-client"
DEFAULT_PARTICIPANT_ID: Final = "firms/SIM/users/connector"
DEFAULT_SCOPES: Final = ("read:orders", "read:reports", "read:dropcopy")
_ACTIONS: Final = (
    "reset",
    "hostile",
    "expire_issued_tokens",
    "new_session",
    "send_snapshot",
    "expire_dropcopy_tokens",
)
_THREAD_MARGIN: Final = 8
_SERVER_GRACE_S: Final = 1.0
_HTTP_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulated venue needs to start.

    Attributes:
        grpc_port: gRPC port on 127.0.0.1 (0: any free port).
        http_port: HTTP port on 127.0.0.1 (0: any free port).
        seed: Seed of the order flow (and of the fault dice).
        rate: Order-flow updates per second (0: paused; drive it with :meth:`SimulatedVenue.advance`).
        warmup_updates: Updates produced at start, so the first snapshot has orders.
        heartbeat_interval_s: Seconds between stream heartbeats.
        journal_path: Where to write the journal (JSON lines), if anywhere.
        journal_stream_sends: Also write a ``stream_send`` line per stream message sent.
        journal_dropcopy: Also write a ``firm_execution`` line per firm execution and a
            ``dropcopy_send`` line per drop-copy response sent.
        firm_users: Other users of the firm trading besides the configured participant (seen on
            Drop Copy only), ``firms/<firm>/users/desk-<n>`` on accounts ``firms/<firm>/accounts/D<n>-1``
            and ``-2``, n = 2, 3, ...
        firm_flow_ratio: Each other user's updates per update of the configured user, on average.
        accounts: Trading accounts of the flow.
        symbols: Symbols of the flow.
        price_scale: Price units per dollar.
        fractional_quantity_scale: Quantity units per contract.
        stream_limit: Concurrent streams of the firm, order and drop-copy streams together, before
            RESOURCE_EXHAUSTED.
        token_lifetime_s: Lifetime of access tokens.
        scopes: Scopes granted to access tokens.
        rest_rate_limit: Enforce the search rate limit (``rest_rate_limit_per_minute`` of the
            settings, 12 by default); False starts, and resets, with no limit.
        client_id: The OAuth client id.
        participant_id: The participant id the venue expects in ``x-participant-id``.
        faults: Behaviour and fault settings in force at start.
    """

    grpc_port: int = 0
    http_port: int = 0
    seed: int = 1
    rate: float = 20.0
    warmup_updates: int = 50
    heartbeat_interval_s: float = 5.0
    journal_path: Path | None = None
    journal_stream_sends: bool = False
    journal_dropcopy: bool = False
    firm_users: int = 2
    firm_flow_ratio: float = 0.2
    accounts: tuple[str, ...] = DEFAULT_ACCOUNTS
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    price_scale: int = 1000
    fractional_quantity_scale: int = 100
    stream_limit: int = 20
    token_lifetime_s: int = 180
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    rest_rate_limit: bool = True
    client_id: str = DEFAULT_CLIENT_ID
    participant_id: str = DEFAULT_PARTICIPANT_ID
    faults: FaultSettings = field(default_factory=FaultSettings)


@dataclass(frozen=True, slots=True)
class VenueEndpoints:
    """Where a started venue listens, and the identities it expects (the ready file's content)."""

    grpc_target: str
    rest_url: str
    token_url: str
    audience: str
    client_id: str
    participant_id: str
    control_url: str

    def to_json(self) -> dict[str, str]:
        """Return the endpoints as a JSON-ready dict."""
        return {
            "grpc_target": self.grpc_target,
            "rest_url": self.rest_url,
            "token_url": self.token_url,
            "audience": self.audience,
            "client_id": self.client_id,
            "participant_id": self.participant_id,
            "control_url": self.control_url,
        }


class SimulatedVenue:
    """The whole simulated venue, in-process (see the module docstring)."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Clock = utc_now,
        stream_handler: Callable[[TokenAuthority], grpc.GenericRpcHandler[Any, Any]] | None = None,
    ) -> None:
        """Set up the venue.

        ``stream_handler`` serves the order stream instead of the simulated flow (the benchmark's
        pre-serialized frames); it is given the venue's token authority.
        """
        self._config = config or SimulatorConfig()
        self._stream_handler = stream_handler
        self._clock = clock
        params = FlowParams(
            accounts=self._config.accounts,
            symbols=self._config.symbols,
            participant=self._config.participant_id,
            price_scale=self._config.price_scale,
            fractional_quantity_scale=self._config.fractional_quantity_scale,
            id_prefix=f"SIM{self._config.seed}",
        )
        self._journal = Journal(
            self._config.journal_path,
            stream_sends=self._config.journal_stream_sends,
            dropcopy=self._config.journal_dropcopy,
        )
        self._exchange = Exchange(
            OrderFlow(params, self._config.seed),
            self._journal,
            rate=0.0,
            clock=clock,
            firm_flows=self._firm_flows(),
        )
        self._faults = FaultBoard(self._with_rate_limit(self._config.faults))
        self._authority: TokenAuthority | None = None
        self._service: OrderStreamService | None = None
        self._dropcopy: DropCopyService | None = None
        self._rest: RestApi | None = None
        self._grpc_server: grpc.Server | None = None
        self._http_server: RestServer | None = None
        self._http_thread: threading.Thread | None = None
        self._endpoints: VenueEndpoints | None = None
        self._pending_keys: list[tuple[str, bytes]] = []

    def _firm_flows(self) -> list[FirmFlow]:
        config = self._config
        if config.firm_users < 0 or config.firm_flow_ratio < 0:
            msg = "firm_users and firm_flow_ratio must not be negative"
            raise ValueError(msg)
        firm = firm_of(config.participant_id)
        flows = []
        for number in range(2, config.firm_users + 2):
            params = FlowParams(
                accounts=(f"firms/{firm}/accounts/D{number}-1", f"firms/{firm}/accounts/D{number}-2"),
                symbols=config.symbols,
                participant=f"firms/{firm}/users/desk-{number}",
                price_scale=config.price_scale,
                fractional_quantity_scale=config.fractional_quantity_scale,
                id_prefix=f"SIM{config.seed}U{number}",
            )
            flows.append(FirmFlow(OrderFlow(params, config.seed * 1009 + number), config.firm_flow_ratio))
        return flows

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Open the journal, start the order flow, and start listening.

        Returns:
            The venue itself.

        Raises:
            RuntimeFailure: A port cannot be bound or the journal cannot be opened.
        """
        config = self._config
        self._journal.open()
        try:
            # Bind first to learn the port: the token URL (the assertion audience) depends on it.
            http_server = RestServer(self._handle_http, config.http_port)
        except OSError as exc:
            msg = f"cannot listen for HTTP on 127.0.0.1:{config.http_port}: {exc}"
            raise RuntimeFailure(msg) from exc
        rest_url = f"http://127.0.0.1:{http_server.port}"
        authority = TokenAuthority(
            token_url=f"{rest_url}/oauth/token",
            audience=rest_url,
            scopes=config.scopes,
            lifetime_s=config.faults.token_lifetime_s or config.token_lifetime_s,
            clock=self._clock,
        )
        for client_id, pem in self._pending_keys:
            authority.register_client_key(client_id, pem)
        self._authority = authority
        slots = StreamSlots(config.stream_limit)
        service = OrderStreamService(
            exchange=self._exchange,
            authority=authority,
            faults=self._faults,
            participant_id=config.participant_id,
            heartbeat_interval_s=config.heartbeat_interval_s,
            slots=slots,
            seed=config.seed,
            clock=self._clock,
        )
        self._service = service
        dropcopy = DropCopyService(
            exchange=self._exchange,
            authority=authority,
            faults=self._faults,
            participant_id=config.participant_id,
            slots=slots,
            seed=config.seed,
            clock=self._clock,
        )
        self._dropcopy = dropcopy
        server = grpc.server(
            ThreadPoolExecutor(
                max_workers=config.stream_limit + _THREAD_MARGIN, thread_name_prefix="sim-grpc"
            ),
            handlers=[
                service.rpc_handler() if self._stream_handler is None else self._stream_handler(authority),
                dropcopy.rpc_handler(),
            ],
        )
        try:
            grpc_port = server.add_insecure_port(f"127.0.0.1:{config.grpc_port}")
        except RuntimeError as exc:
            http_server.server_close()
            msg = f"cannot listen for gRPC on 127.0.0.1:{config.grpc_port}: {exc}"
            raise RuntimeFailure(msg) from exc
        server.start()
        self._grpc_server = server
        self._rest = RestApi(
            exchange=self._exchange,
            authority=authority,
            faults=self._faults,
            control=self,
            participant_id=config.participant_id,
            audience=rest_url,
            seed=config.seed,
            clock=self._clock,
        )
        self._http_server = http_server
        self._http_thread = threading.Thread(
            target=http_server.serve_forever,
            kwargs={"poll_interval": _HTTP_POLL_S},
            name="sim-http",
            daemon=True,
        )
        self._http_thread.start()
        self._endpoints = VenueEndpoints(
            grpc_target=f"127.0.0.1:{grpc_port}",
            rest_url=rest_url,
            token_url=f"{rest_url}/oauth/token",
            audience=rest_url,
            client_id=config.client_id,
            participant_id=config.participant_id,
            control_url=f"{rest_url}/control",
        )
        if config.warmup_updates:
            self._exchange.advance(config.warmup_updates)
        self._exchange.set_rate(config.rate)
        self._exchange.start()
        _LOG.info("venue simulator listening: gRPC %s, HTTP %s", self._endpoints.grpc_target, rest_url)
        return self

    def stop(self) -> None:
        """Stop everything; safe to call twice."""
        if self._service is not None:
            self._service.shut_down()
        if self._dropcopy is not None:
            self._dropcopy.shut_down()
        self._exchange.stop()
        if self._grpc_server is not None:
            self._grpc_server.stop(_SERVER_GRACE_S).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5.0)
            self._http_thread = None
        self._journal.close()

    # ------------------------------------------------------------------ information

    @property
    def config(self) -> SimulatorConfig:
        """The configuration the venue was built with."""
        return self._config

    @property
    def endpoints(self) -> VenueEndpoints:
        """Where the venue listens.

        Raises:
            RuntimeFailure: The venue is not started.
        """
        if self._endpoints is None:
            msg = "the venue simulator is not started"
            raise RuntimeFailure(msg)
        return self._endpoints

    @property
    def authority(self) -> TokenAuthority:
        """The token authority (started venues only)."""
        if self._authority is None:
            msg = "the venue simulator is not started"
            raise RuntimeFailure(msg)
        return self._authority

    @property
    def journal(self) -> Journal:
        """The journal of every event produced."""
        return self._journal

    def firm_executions(self) -> list[FirmExecution]:
        """Every execution of the firm so far, at its position (what Drop Copy serves), in order."""
        return self._exchange.read(lambda _flow, _journal: list(self._exchange.firm_log.entries()))

    @property
    def participants(self) -> tuple[str, ...]:
        """The firm's trading users: the configured participant first, then the other users."""
        return self._exchange.participants

    def open_orders(self) -> list[trading_pb2.Order]:
        """Copies of the venue's working orders, oldest first."""

        def collect(flow: OrderFlow, _journal: Journal) -> list[trading_pb2.Order]:
            copies = []
            for order in flow.open_orders():
                copy = trading_pb2.Order()
                copy.CopyFrom(order)
                copies.append(copy)
            return copies

        return self._exchange.read(collect)

    def stats(self) -> dict[str, Any]:
        """Counters: what was produced, streams, messages, REST requests, tokens."""
        result: dict[str, Any] = dict(self._exchange.stats())
        if self._service is not None:
            counters = self._service.counters
            result.update({name: getattr(counters, name) for name in counters.__slots__})
        if self._dropcopy is not None:
            dropcopy = self._dropcopy.counters
            result.update({name: getattr(dropcopy, name) for name in dropcopy.__slots__})
            result["streams_open_firm"] = result.get("streams_open", 0) + dropcopy.dropcopy_streams_open
        if self._rest is not None:
            result.update(self._rest.counters)
        if self._authority is not None:
            result["tokens_issued_total"] = self._authority.issued
        result["executions_streamed"] = self._journal.streamed_count
        result["rate"] = self._exchange.rate
        return result

    # ------------------------------------------------------------------ clients and tokens

    def register_client_key(self, public_key_pem: bytes, client_id: str | None = None) -> None:
        """Register a client's RSA public key (PEM); works before and after start.

        Args:
            public_key_pem: The public key.
            client_id: The client; the configured one when omitted.
        """
        owner = client_id or self._config.client_id
        if self._authority is None:
            self._pending_keys.append((owner, public_key_pem))
        else:
            self._authority.register_client_key(owner, public_key_pem)

    def generate_client_key(self, client_id: str | None = None) -> bytes:
        """Generate an RSA-2048 client key pair, register its public half, and return the private PEM."""
        private_pem, public_pem = generate_client_key()
        self.register_client_key(public_pem, client_id)
        return private_pem

    def issue_token(self, *, scopes: Sequence[str] | None = None, lifetime_s: int | None = None) -> str:
        """Issue an access token directly, bypassing the token endpoint (for tests)."""
        return self.authority.issue(self._config.client_id, scopes=scopes, lifetime_s=lifetime_s)

    # ------------------------------------------------------------------ faults and the flow

    @property
    def faults(self) -> FaultSettings:
        """The fault settings in force."""
        return self._faults.current

    def set_faults(self, **changes: Any) -> FaultSettings:
        """Change some settings and run actions, as the control API does; return the settings.

        See :mod:`connector.simulator.faults` for the fields and the actions (``reset``, ``hostile``,
        ``expire_issued_tokens``, ``new_session``, ``send_snapshot``, ``expire_dropcopy_tokens``).
        """
        return self._apply_faults(changes)

    def reset_faults(self) -> FaultSettings:
        """Go back to the baseline: every fault off, every behaviour at its default."""
        return self._apply_faults({"reset": True})

    def expire_issued_tokens(self) -> None:
        """Make every access token issued so far invalid."""
        self.authority.expire_issued_tokens()

    def baseline_faults(self) -> FaultSettings:
        """The settings ``reset`` returns to: every fault off, the configured rate limit."""
        return self._with_rate_limit(FaultSettings())

    def _with_rate_limit(self, settings: FaultSettings) -> FaultSettings:
        if self._config.rest_rate_limit:
            return settings
        return settings.with_changes({"rest_rate_limit_per_minute": 0})

    def _apply_faults(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Apply the one-shot actions and the field changes (see :mod:`connector.simulator.faults`)."""
        remaining = dict(changes)
        actions = {name: remaining.pop(name, False) for name in _ACTIONS}
        for name, value in actions.items():
            if not isinstance(value, bool):
                msg = f"{name} is an action: give true (or false), got {value!r}"
                raise ValueError(msg)
        base = self.baseline_faults() if actions["reset"] else self._faults.current
        if actions["hostile"]:
            base = base.with_hostile()
        settings = self._faults.replace(base.with_changes(remaining))
        if self._authority is not None:
            self._authority.set_lifetime(settings.token_lifetime_s or self._config.token_lifetime_s)
            if actions["expire_issued_tokens"]:
                self._authority.expire_issued_tokens()
        if self._service is not None:
            if actions["new_session"]:
                self._service.new_sessions()
            if actions["send_snapshot"]:
                self._service.request_snapshots()
        if self._dropcopy is not None and actions["expire_dropcopy_tokens"]:
            self._dropcopy.expire_tokens()
        return settings

    def set_rate(self, rate: float) -> None:
        """Change the order-flow rate (updates per second; 0 pauses it)."""
        self._exchange.set_rate(rate)

    def advance(self, updates: int) -> list[VenueUpdate]:
        """Produce ``updates`` updates now, on the caller's thread (journaled and streamed as usual)."""
        return self._exchange.advance(updates)

    # ------------------------------------------------------------------ HTTP and ControlPlane

    def _handle_http(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, client_host: str
    ) -> HttpResponse:
        if self._rest is None:
            return HttpResponse(503, {"code": 14, "message": "venue simulator is starting"})
        return self._rest.handle(method, path, headers, body, client_host)

    def fault_settings(self) -> dict[str, Any]:
        """Return the fault settings as JSON (control API)."""
        return self._faults.current.to_json()

    def change_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply fault changes and actions from JSON (control API); return the new settings."""
        return self._apply_faults(changes).to_json()
