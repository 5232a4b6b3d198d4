"""A small Confluent Schema Registry on loopback: the few REST endpoints the connector uses.

``FakeSchemaRegistry`` speaks the real HTTP API (so the real ``SchemaRegistryClient`` talks to it):
register (``POST /subjects/{s}/versions``), look up (``POST /subjects/{s}``), latest version, schema
by ID, subjects, and the compatibility check (``POST /compatibility/subjects/{s}/versions/latest``),
which applies BACKWARD with :mod:`connector.core.schema_compat` — the same checker the test suite trusts
for the committed schemas. Registering an incompatible schema answers 409 as the real one does.

It can require HTTP basic auth, serve HTTPS (optionally requiring a client certificate), be
stopped and started again on the same port (an outage), and records every request it served.

``ApicurioRegistry`` is a real registry: Apicurio Registry 2.6 (fetched by ``make tools`` into
``.tools/apicurio``), run with the machine's Java, in-memory storage, speaking the Confluent API under
``/apis/ccompat/v7`` (which confluent-kafka's ``SchemaRegistryClient`` uses unchanged). Its checks are
Avro's Java ``SchemaCompatibility``, so it is also the independent judge of our own checker. The
``real_registry`` fixture (session) starts one; without Java or the jar the tests skip, and fail
under ``CI``. Stopping it is an outage; its in-memory storage does not survive a restart.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import pytest
import requests

from connector.core.schema_compat import backward_incompatibilities


@dataclass
class Registered:
    subject: str
    version: int
    schema_id: int
    schema: str


@dataclass
class RegistryState:
    schemas_by_id: dict[int, str] = field(default_factory=dict)
    versions: dict[str, list[Registered]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def canonical(self, text: str) -> str:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    def id_of(self, text: str) -> int:
        canonical = self.canonical(text)
        for schema_id, known in self.schemas_by_id.items():
            if known == canonical:
                return schema_id
        schema_id = 100 + len(self.schemas_by_id)  # not 1, so a test cannot pass by luck
        self.schemas_by_id[schema_id] = canonical
        return schema_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeSchemaRegistry:
    """A Schema Registry on 127.0.0.1 that can go down and come back on the same port."""

    def __init__(
        self,
        *,
        port: int | None = None,
        credentials: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port or free_port()
        self.credentials = credentials
        self.tls = tls
        self.state = RegistryState()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeSchemaRegistry:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-registry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def register(self, subject: str, schema: str) -> int:
        """Register directly (test setup); returns the ID."""
        with self.state.lock:
            return self._register(subject, schema)[1]["id"]

    def _register(self, subject: str, schema: str) -> tuple[int, dict[str, Any]]:
        state = self.state
        versions = state.versions.setdefault(subject, [])
        canonical = state.canonical(schema)
        for entry in versions:
            if state.canonical(entry.schema) == canonical:
                return 200, {"id": entry.schema_id}
        if versions:
            problems = backward_incompatibilities(json.loads(schema), json.loads(versions[-1].schema))
            if problems:
                return 409, {
                    "error_code": 409,
                    "message": f"Schema being registered is incompatible with an earlier one: {problems[0]}",
                }
        schema_id = state.id_of(schema)
        versions.append(Registered(subject, len(versions) + 1, schema_id, schema))
        return 200, {"id": schema_id}


def _handler(registry: FakeSchemaRegistry) -> type[BaseHTTPRequestHandler]:
    state = registry.state

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, document: Any) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if registry.credentials is None:
                return True
            expected = "Basic " + base64.b64encode(registry.credentials.encode()).decode()
            if self.headers.get("Authorization") == expected:
                return True
            self._answer(401, {"error_code": 401, "message": "Unauthorized"})
            return False

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path
            with state.lock:
                state.requests.append((method, path))
            if not self._authorised():
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            parts = [unquote(part) for part in path.strip("/").split("/")]
            with state.lock:
                status, document = self._dispatch(method, parts, body)
            self._answer(status, document)

        def _dispatch(  # noqa: PLR0911 - one answer per route
            self, method: str, parts: list[str], body: dict[str, Any]
        ) -> tuple[int, Any]:
            not_subject = (404, {"error_code": 40401, "message": "Subject not found"})
            if method == "GET" and parts == ["subjects"]:
                return 200, sorted(state.versions)
            if method == "GET" and parts[:2] == ["schemas", "ids"] and len(parts) == 3:
                text = state.schemas_by_id.get(int(parts[2]))
                if text is None:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": text, "schemaType": "AVRO"}
            if parts[:1] == ["subjects"] and len(parts) >= 2:
                subject = parts[1]
                versions = state.versions.get(subject, [])
                if method == "POST" and len(parts) == 3 and parts[2] == "versions":
                    return registry._register(subject, body["schema"])
                if method == "POST" and len(parts) == 2:
                    if not versions:
                        return not_subject
                    canonical = state.canonical(body["schema"])
                    for entry in versions:
                        if state.canonical(entry.schema) == canonical:
                            return 200, _registered(entry)
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                if method == "GET" and parts[2:] == ["versions", "latest"]:
                    return (200, _registered(versions[-1])) if versions else not_subject
            if (
                method == "POST"
                and parts[:2] == ["compatibility", "subjects"]
                and parts[3:]
                == [
                    "versions",
                    "latest",
                ]
            ):
                versions = state.versions.get(parts[2], [])
                if not versions:
                    return not_subject
                problems = backward_incompatibilities(
                    json.loads(body["schema"]), json.loads(versions[-1].schema)
                )
                return 200, {"is_compatible": not problems, "messages": [str(p) for p in problems]}
            return 404, {"error_code": 404, "message": f"no route {method} /{'/'.join(parts)}"}

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler


def _registered(entry: Registered) -> dict[str, Any]:
    return {
        "subject": entry.subject,
        "version": entry.version,
        "id": entry.schema_id,
        "schema": entry.schema,
        "schemaType": "AVRO",
    }


@pytest.fixture
def fake_registry() -> Iterator[FakeSchemaRegistry]:
    """A running fake Schema Registry on loopback (plain HTTP, no auth)."""
    registry = FakeSchemaRegistry().start()
    try:
        yield registry
    finally:
        registry.stop()


APICURIO_DIR: Final = Path(__file__).resolve().parents[1] / ".tools" / "apicurio"
APICURIO_START_TIMEOUT_S: Final = 90.0
CCOMPAT_PATH: Final = "/apis/ccompat/v7"


def apicurio_jar() -> Path | None:
    """The Apicurio runner jar ``make tools`` installed, if any."""
    found = sorted(APICURIO_DIR.glob("apicurio-registry-app-*-runner.jar"))
    return found[-1] if found else None


class ApicurioRegistry:
    """Apicurio Registry as a process on 127.0.0.1 (in-memory storage); start, stop (an outage), start."""

    def __init__(self, log: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL (what ``schema_registry.url`` takes)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def start(self) -> ApicurioRegistry:
        """Start the JVM and wait until the Confluent API answers."""
        jar = apicurio_jar()
        java = shutil.which("java")
        assert jar is not None and java is not None, "Apicurio needs `make tools` and Java"
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
                    "-Dquarkus.log.level=WARN",
                    "-jar", str(jar),
                ],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "JAVA_TOOL_OPTIONS": ""},
            )  # fmt: skip
        deadline = time.monotonic() + APICURIO_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"Apicurio exited: {self.log.read_text(errors='replace')[-2000:]}"
            )
            try:
                if requests.get(f"{self.url}/subjects", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        msg = f"Apicurio did not answer in {APICURIO_START_TIMEOUT_S:.0f} s: {self.log.read_text()[-2000:]}"
        raise AssertionError(msg)

    def stop(self) -> None:
        """Stop the JVM (its schemas are gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.process = None

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the compatibility level, globally or for one subject."""
        where = f"{self.url}/config" + (f"/{subject}" if subject else "")
        requests.put(where, json={"compatibility": level}, timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def real_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApicurioRegistry]:
    """A running Apicurio Registry for the session, BACKWARD by default (as Confluent's)."""
    missing = None if shutil.which("java") else "no java on PATH"
    missing = missing or (None if apicurio_jar() else f"no Apicurio jar in {APICURIO_DIR}: run `make tools`")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the real Schema Registry cannot start under CI: {missing}")
        pytest.skip(f"the real Schema Registry cannot start: {missing}")
    registry = ApicurioRegistry(tmp_path_factory.mktemp("apicurio") / "apicurio.log").start()
    try:
        registry.set_compatibility("BACKWARD")
        yield registry
    finally:
        registry.stop()
