"""Typed, frozen settings: one YAML file plus ``PMX_CONNECTOR_`` environment overrides, validated once.

Environment variables override file values: ``PMX_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS=b:9092`` sets
``kafka.bootstrap_servers`` (``__`` nests; names are case-insensitive; values are parsed as YAML
scalars or flow collections, so ``[a, b]`` is a list and ``true`` a bool). Every problem becomes one
:class:`~connector.errors.ConfigError` line naming the key: unknown keys (with a "did you mean"),
missing keys, wrong types, and unsafe combinations such as plaintext to a non-loopback venue.
Secrets (librdkafka passwords, registry credentials) are held as ``SecretStr`` and never printed.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.core.record_schemas import RecordType
from connector.core.venue_time import ns_from_iso
from connector.errors import ConfigError

ENV_PREFIX: Final = "PMX_CONNECTOR_"
ENV_NESTING: Final = "__"

# librdkafka properties whose values are credentials: kept as SecretStr, never logged.
SECRET_KAFKA_PROPERTIES: Final = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.oauthbearer.assertion.private.key.passphrase",
    }
)

# librdkafka properties naming files the client reads (CA bundle, client certificate and key, ...):
# checked at start, so a wrong path is one line naming the property instead of a broker-side mystery.
FILE_KAFKA_PROPERTIES: Final = frozenset(
    {
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.crl.location",
        "ssl.keystore.location",
        "sasl.kerberos.keytab",
    }
)
# librdkafka's special value for ssl.ca.location: probe the system's default CA paths.
KAFKA_CA_PROBE: Final = "probe"
CONFLUENT_SCHEMA_ID_MAX: Final = 2**31 - 1

PositiveSeconds = Annotated[float, Field(gt=0)]


class SubKeyError(ValueError):
    """A problem with an entry inside a mapping setting; the message is reported under ``key.sub_key``."""

    def __init__(self, sub_key: str, message: str) -> None:
        super().__init__(message)
        self.sub_key = sub_key


def readable_file(path: Path) -> str | None:
    """Return why ``path`` cannot be read as a file, or None when it can."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        return f"{str(path)!r} is a directory, not a file"
    except OSError as exc:
        return f"cannot read {str(path)!r}: {exc.strerror}"
    return None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class VenueSettings(_Section):
    """Where the venue is and what to subscribe to."""

    grpc_target: str = Field(min_length=1, description="host:port of the venue's gRPC API")
    rest_url: str = Field(min_length=1, description="base URL of the venue's REST API")
    insecure: bool = Field(False, description="plaintext gRPC/HTTP; only allowed for loopback endpoints")
    tls_ca_file: Path | None = Field(
        None, description="PEM CA bundle to trust for the venue's gRPC, REST and token endpoints"
    )
    participant_id: str = Field(pattern=r"^firms/[^/]+/users/[^/]+$", description="x-participant-id")
    symbols: tuple[str, ...] = Field((), description="symbol filter; empty means all")
    accounts: tuple[str, ...] = Field((), description="account filter; empty means all of the user's")
    heartbeat_timeout_s: PositiveSeconds = Field(90.0, description="silence after which the stream is dead")
    max_receive_message_bytes: int = Field(64 * 1024 * 1024, ge=4 * 1024 * 1024)
    sources: tuple[Literal["order_stream", "drop_copy"], ...] = Field(
        ("order_stream",),
        description="the venue streams to publish: order_stream (the user's orders and executions), "
        "drop_copy (the firm's executions, resumable), or both",
    )
    drop_copy_firms: tuple[str, ...] = Field(
        (), description="Drop Copy firm filter; empty means the caller's firm (venue.participant_id's)"
    )
    drop_copy_resend_s: float = Field(
        60.0,
        ge=0,
        description="how far before a resume token the venue may re-send executions (undocumented): "
        "a start remembers the execution IDs published that long before the checkpoint's Drop Copy position",
    )

    @field_validator("sources")
    @classmethod
    def _sources_are_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            msg = "must name at least one of order_stream, drop_copy"
            raise ValueError(msg)
        if len(set(value)) != len(value):
            msg = f"names a source twice: {list(value)}"
            raise ValueError(msg)
        return value

    @field_validator("drop_copy_firms")
    @classmethod
    def _firms_are_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not firm.strip() for firm in value):
            msg = "holds an empty firm ID"
            raise ValueError(msg)
        return value

    @property
    def order_stream(self) -> bool:
        """Whether the order stream is a source."""
        return "order_stream" in self.sources

    @property
    def drop_copy(self) -> bool:
        """Whether Drop Copy is a source."""
        return "drop_copy" in self.sources

    @field_validator("rest_url")
    @classmethod
    def _rest_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = "must be an http(s) URL such as https://api.prod.polymarketexchange.com"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("grpc_target")
    @classmethod
    def _grpc_target_has_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            msg = "must be host:port, such as grpc-api.prod.polymarketexchange.com:443"
            raise ValueError(msg)
        return value

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file_is_readable(cls, value: Path | None) -> Path | None:
        problem = None if value is None else readable_file(value)
        if problem:
            raise ValueError(problem)
        return value


class AuthSettings(_Section):
    """The private-key JWT client credentials (venue-api.md §4)."""

    token_url: str = Field(min_length=1, description="the OAuth token endpoint; also the assertion's aud")
    client_id: str = Field(min_length=1)
    private_key_file: Path = Field(description="PEM file of the RSA private key (a mounted Secret)")
    audience: str = Field(min_length=1, description="the API audience, i.e. the REST base URL")
    refresh_margin_s: PositiveSeconds = Field(30.0, description="renew the token this long before expiry")

    @field_validator("token_url")
    @classmethod
    def _token_url_is_http(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            msg = "must be an http(s) URL such as https://pmx-prod.us.auth0.com/oauth/token"
            raise ValueError(msg)
        return value


class TopicSettings(_Section):
    """Topic names relative to ``kafka.topic_prefix`` (a name containing a dot is used as is)."""

    executions: str = "orders.executions"
    snapshots: str = "orders.snapshots"
    cancel_rejects: str = "orders.cancel-rejects"
    heartbeats: str = "connector.heartbeats"
    checkpoints: str = "connector.checkpoints"
    dlq: str = "connector.dlq"
    leader: str = Field(
        "connector.leader",
        description="one-partition coordination topic of the leader election (connector.leader_election)",
    )


KafkaPropertyValue = str | int | float | bool | SecretStr


class KafkaSettings(_Section):
    """The Kafka cluster, topic names and raw librdkafka properties."""

    bootstrap_servers: str = Field(min_length=1)
    topic_prefix: str = Field("pmx", pattern=r"^[A-Za-z0-9._-]*$")
    topics: TopicSettings = TopicSettings()
    create_topics: bool = Field(True, description="create missing topics at start (if permitted)")
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(3, ge=1)
    properties: dict[str, KafkaPropertyValue] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap_servers_are_host_ports(cls, value: str) -> str:
        for server in value.split(","):
            address = server.strip().split("://", 1)[-1]  # librdkafka accepts PROTOCOL://host:port
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) <= 65535:
                msg = f"{server.strip()!r} is not host:port; expected e.g. kafka-0:9092,kafka-1:9092"
                raise ValueError(msg)
        return value

    @field_validator("properties")
    @classmethod
    def _property_files_are_readable(
        cls, value: dict[str, KafkaPropertyValue]
    ) -> dict[str, KafkaPropertyValue]:
        for name in sorted(FILE_KAFKA_PROPERTIES & value.keys()):
            location = value[name]
            if name == "ssl.ca.location" and location == KAFKA_CA_PROBE:
                continue
            if not isinstance(location, str):
                raise SubKeyError(name, "must be a file path")
            problem = readable_file(Path(location))
            if problem:
                raise SubKeyError(name, problem)
        return value

    @field_validator("properties", mode="before")
    @classmethod
    def _hide_secret_properties(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                key: SecretStr(str(item))
                if key in SECRET_KAFKA_PROPERTIES and isinstance(item, (str, int, float))
                else item
                for key, item in value.items()
            }
        return value

    def topic(self, name: str) -> str:
        """Return the full topic name for a configured relative name."""
        return f"{self.topic_prefix}.{name}" if self.topic_prefix else name


class SchemaRegistrySettings(_Section):
    """Confluent Schema Registry; without a URL, records use Avro single-object encoding.

    With ``auto_register`` off, ``pinned_ids`` gives the schema ID of each record type: those
    encoders never ask the registry, so a registry outage never stops publishing. Record types
    without a pinned ID get their ID from the registry once, at start (retried until it answers).
    """

    url: str | None = None
    basic_auth_user_info: SecretStr | None = None
    auto_register: bool = True
    subject_name_strategy: Literal["topic", "record", "topic_record"] = "topic"
    pinned_ids: dict[str, int] = Field(
        default_factory=dict, description="record type (e.g. ExecutionEvent) -> schema ID"
    )
    ssl_ca_location: Path | None = Field(None, description="PEM CA bundle that signed the registry's cert")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM) for mTLS")
    ssl_key_location: Path | None = Field(None, description="client private key (PEM) for mTLS")

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_the_url(cls, value: Any) -> Any:
        """``https://user:secret@host`` works, but the credentials move out of the URL (it is logged)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("url"), str):
            return value
        parts = urlsplit(value["url"])
        if parts.username is None and parts.password is None:
            return value
        if value.get("basic_auth_user_info") is not None:
            msg = (
                "schema_registry.url: credentials are both in the URL and in "
                "schema_registry.basic_auth_user_info; keep them in basic_auth_user_info only"
            )
            raise ValueError(msg)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        user_info = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        return {
            **value,
            "url": urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
            "basic_auth_user_info": SecretStr(user_info),
        }

    @field_validator("url")
    @classmethod
    def _url_is_http_or_mock(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https", "mock"} or not (parts.hostname or parts.netloc):
            msg = "must be an http(s) URL such as https://schema-registry:8081"
            raise ValueError(msg)
        return value

    @field_validator("pinned_ids")
    @classmethod
    def _pinned_ids_name_record_types(cls, value: dict[str, int]) -> dict[str, int]:
        known = [record_type.value for record_type in RecordType]
        for name, schema_id in value.items():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; record types are {', '.join(known)}"
                raise SubKeyError(name, f"unknown record type{hint}")
            if not 1 <= schema_id <= CONFLUENT_SCHEMA_ID_MAX:
                raise SubKeyError(name, f"must be a schema ID between 1 and {CONFLUENT_SCHEMA_ID_MAX}")
        return value

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    @classmethod
    def _tls_files_are_readable(cls, value: Path | None) -> Path | None:
        problem = None if value is None else readable_file(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SchemaRegistrySettings:
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            msg = "schema_registry.ssl_certificate_location and ssl_key_location: set both or neither"
            raise ValueError(msg)
        if self.pinned_ids and self.auto_register:
            msg = "schema_registry.pinned_ids: pinned IDs need schema_registry.auto_register: false"
            raise ValueError(msg)
        if self.pinned_ids and self.url is None:
            msg = "schema_registry.pinned_ids: pinned IDs need schema_registry.url (Confluent framing)"
            raise ValueError(msg)
        host = urlsplit(self.url or "").hostname or ""
        plaintext = bool(self.url and self.url.startswith("http://"))
        if self.basic_auth_user_info is not None and plaintext and not _is_loopback(host):
            msg = (
                "schema_registry.basic_auth_user_info: credentials would travel in plaintext "
                f"to {host!r}; use an https:// schema_registry.url"
            )
            raise ValueError(msg)
        return self

    def client_conf(self) -> dict[str, Any]:
        """The ``SchemaRegistryClient`` configuration (credentials revealed here, at the boundary)."""
        conf: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        for key, path in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if path is not None:
                conf[key] = str(path)
        return conf


class HttpSettings(_Section):
    """The HTTP endpoint for /metrics, /healthz, /readyz and /status."""

    listen: str = "0.0.0.0:9400"  # a pod's metrics port must be reachable by Prometheus

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            msg = "must be host:port, such as 0.0.0.0:9400"
            raise ValueError(msg)
        return value


class ConnectorSettings(_Section):
    """The connector instance."""

    name: str = Field("pmx-connector", pattern=r"^[A-Za-z0-9._-]+$")
    heartbeat_interval_s: PositiveSeconds = 10.0
    checkpoint_interval_s: PositiveSeconds = Field(5.0, description="how often the checkpoint is written")
    start_from: str = Field(
        "now",
        description="where the very first start (no checkpoint yet) begins: 'now' or an ISO 8601 time",
    )
    flush_timeout_s: PositiveSeconds = Field(
        20.0, description="on SIGTERM, how long to wait for Kafka acks (keep below the pod's grace period)"
    )
    recent_execution_ids: int = Field(
        600_000,
        ge=1,
        description="execution IDs remembered for dedup: 20 s at 30,000 executions/s (seeded at start)",
    )
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description=(
            "exactly_once: records count as delivered once their Kafka transaction committed "
            "(read_committed consumers see each execution once); at_least_once: once acknowledged"
        ),
    )
    transaction_interval_s: float = Field(
        0.1, gt=0, le=10, description="a Kafka transaction is committed at most this long after it began"
    )
    transaction_max_records: int = Field(
        10_000, ge=1, description="a Kafka transaction is committed once it holds this many records"
    )
    leader_election: bool = Field(
        False,
        description=(
            "elect one leader among the instances with this name and subscription (a consumer group "
            "over kafka.topics.leader); the others stand by, warm, and take over"
        ),
    )

    @field_validator("start_from")
    @classmethod
    def _start_from_is_now_or_time(cls, value: str) -> str:
        start_from_ns(value)
        return value


def start_from_ns(value: str) -> int | None:
    """Parse ``connector.start_from``: None for ``now``, else epoch nanoseconds of an aware ISO time.

    Raises:
        ValueError: neither ``now`` nor an ISO 8601 time with a UTC offset.
    """
    if value.strip().lower() == "now":
        return None
    try:
        return ns_from_iso(value)
    except ValueError as exc:
        msg = f"'now' or an ISO 8601 time with a UTC offset: {exc}"
        raise ValueError(msg) from None


class BackfillSettings(_Section):
    """Gap recovery through the venue's REST execution search (DESIGN.md §4)."""

    margin_before_s: float = Field(
        5.0, ge=0, description="searched before the resume point (the search's time semantics)"
    )
    margin_after_s: float = Field(1.0, ge=0, description="searched after the new stream's first message")
    indexing_delay_s: float = Field(
        2.0, ge=0, description="how long after it happens an execution is searchable (the tail waits this)"
    )
    page_size: int = Field(
        1000, ge=1, le=1000, description="executions per search page (the venue's largest)"
    )
    requests_per_minute: int = Field(12, ge=1, description="the venue's search rate limit, per firm")
    retry_budget_s: PositiveSeconds = Field(
        600.0, description="how long a failing search is retried before the gap is declared"
    )
    request_timeout_s: PositiveSeconds = 30.0
    holdback_max_s: PositiveSeconds = Field(
        5.0, description="how long live updates wait behind a backfill before flowing beside it"
    )
    holdback_max_records: int = Field(100_000, ge=1, description="live records held back at most")
    holdback_max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="bytes held back at most")
    slice_max_s: PositiveSeconds = Field(
        300.0, description="longest window searched (and buffered) at once; shorter on a busy market"
    )
    retention_days: float = Field(7.0, gt=0, description="how long the venue keeps executions")


class Settings(_Section):
    """Every setting of the connector."""

    venue: VenueSettings
    auth: AuthSettings
    kafka: KafkaSettings
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    http: HttpSettings = HttpSettings()
    connector: ConnectorSettings = ConnectorSettings()
    backfill: BackfillSettings = BackfillSettings()

    @model_validator(mode="after")
    def _plaintext_only_to_loopback(self) -> Settings:
        if not self.venue.insecure:
            for key, url in (
                ("venue.rest_url", self.venue.rest_url),
                ("auth.token_url", self.auth.token_url),
            ):
                if urlsplit(url).scheme != "https":
                    msg = (
                        f"{key}: must be https:// (TLS is on unless venue.insecure is set, "
                        "which only loopback endpoints may use)"
                    )
                    raise ValueError(msg)
        if self.venue.insecure:
            for key, endpoint in (
                ("venue.grpc_target", f"//{self.venue.grpc_target}"),
                ("venue.rest_url", self.venue.rest_url),
                ("auth.token_url", self.auth.token_url),
            ):
                host = urlsplit(endpoint).hostname or ""
                if not _is_loopback(host):
                    msg = (
                        f"venue.insecure: plaintext is only allowed to loopback endpoints; {key} is {host!r}"
                    )
                    raise ValueError(msg)
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (optional), apply environment overrides, and validate once.

    Raises:
        ConfigError: one line naming the offending key and the problem.
    """
    raw: dict[str, Any] = _read_yaml(path) if path is not None else {}
    _apply_environment(raw, os.environ if environ is None else environ)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read config file {str(path)!r}: {exc.strerror}"
        raise ConfigError(msg) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        msg = f"config file {str(path)!r} is not valid YAML{where}: {problem}"
        raise ConfigError(msg) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        msg = f"config file {str(path)!r} must hold a mapping of sections (venue, auth, kafka, ...)"
        raise ConfigError(msg)
    return loaded


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if not all(path):
            msg = f"environment variable {name}: empty key segment (use __ between keys)"
            raise ConfigError(msg)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                msg = f"environment variable {name}: {'.'.join(path[:-1])} is not a section"
                raise ConfigError(msg)
            node = child
        node[path[-1]] = _parse_env_value(value)


def _parse_env_value(value: str) -> Any:
    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"]]
    key = ".".join(location) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_did_you_mean(location)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SubKeyError):
        return f"{key}.{cause.sub_key}: {cause}"  # never echo the mapping: it may hold secrets
    if not location or message.startswith(f"{key}."):
        return message  # a cross-field check, whose message names its keys
    shown = _shown_input(error.get("input"), location)
    return f"{key}: {message}{shown}"


def _shown_input(value: Any, location: list[str]) -> str:
    if isinstance(value, (dict, list)) or "properties" in location or "basic_auth_user_info" in location:
        return ""  # never echo secrets or whole sections
    return f" (got {value!r})"


def _did_you_mean(location: list[str]) -> str:
    model: type[BaseModel] = Settings
    for part in location[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(location[-1], list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
