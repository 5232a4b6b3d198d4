"""The Dockerfile's structure (no Docker engine here, so it is not built by the suite).

Checked: a slim Python 3.11 base, a builder stage and a final stage, no build tools installed in
the final stage, a non-root USER whose UID/GID are the chart's runAsUser/runAsGroup, the
``pmx-connector`` entrypoint, the chart's HTTP port, and a .dockerignore that keeps the context small.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy_fixtures import REPO_ROOT, all_documents, the_one

BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "python3-dev", "git")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comments dropped."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    logical = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    parsed = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def pod_security() -> dict[str, Any]:
    pod = the_one(all_documents({}), "Deployment")["spec"]["template"]["spec"]
    return {**pod["securityContext"], **pod["containers"][0]["securityContext"]}


def test_a_multi_stage_build_on_slim_python_311() -> None:
    args = dict(arguments.split("=", 1) for keyword, arguments in instructions() if keyword == "ARG")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    froms = [arguments for keyword, arguments in instructions() if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = stages()[-1]
    assert any("--from=builder" in arguments or "from=builder" in arguments for _, arguments in final)


def test_the_final_stage_installs_no_build_tools() -> None:
    final = " ".join(arguments for keyword, arguments in stages()[-1] if keyword == "RUN")
    assert "apt-get install" not in final
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\b{re.escape(tool)}\b", final), tool
    assert "--no-index" in final  # only the builder's wheels, nothing fetched or compiled


def test_it_runs_as_the_charts_non_root_user() -> None:
    users = [arguments for keyword, arguments in stages()[-1] if keyword == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    security = pod_security()
    assert int(uid) != 0
    assert int(uid) == security["runAsUser"] and int(gid) == security["runAsGroup"]
    created = " ".join(arguments for keyword, arguments in stages()[-1] if keyword == "RUN")
    assert f"--uid {uid}" in created and f"--gid {gid}" in created


def test_the_entrypoint_is_pmx_connector_on_the_charts_port() -> None:
    final = dict(stages()[-1])
    assert json.loads(final["ENTRYPOINT"]) == ["pmx-connector"]
    assert json.loads(final["CMD"])[0] == "run"
    container = the_one(all_documents({}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert final["EXPOSE"] == str(container["ports"][0]["containerPort"])
    assert "command" not in container  # the chart relies on the image's entrypoint


def test_the_build_context_is_only_the_package() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!MANIFEST.in", "!connector/", "!native/"} <= set(rules)
    assert {"native/target", "native/fuzz"} <= set(rules)  # no local build output in the context
    copied = [
        arguments.split()[:-1]
        for keyword, arguments in stages()[0]
        if keyword == "COPY" and not arguments.startswith("--from=")
    ]
    assert sorted(source for sources in copied for source in sources) == [
        "MANIFEST.in",
        "README.md",
        "connector",
        "native",
        "pyproject.toml",
    ]


def test_the_builder_stage_has_the_rust_toolchain_for_the_native_transcoder() -> None:
    builder = stages()[0]
    toolchain = [
        arguments
        for keyword, arguments in builder
        if keyword == "COPY" and arguments.startswith("--from=rust:")
    ]
    assert {arguments.split()[1] for arguments in toolchain} == {"/usr/local/cargo", "/usr/local/rustup"}
    environment = " ".join(arguments for keyword, arguments in builder if keyword == "ENV")
    assert "/usr/local/cargo/bin" in environment and "RUSTUP_HOME=/usr/local/rustup" in environment
