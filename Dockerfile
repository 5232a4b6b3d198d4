# syntax=docker/dockerfile:1
# The image the Helm chart (helm/pmx-connector) runs: `pmx-connector run --config ...`.
#
# Two stages: the builder turns the project and its dependencies into wheels; the final stage
# installs those wheels into a slim Python with no compiler and no build tools, and runs as an
# unprivileged user whose UID/GID (10001) match the chart's runAsUser/runAsGroup.
# Build: docker build -t pmx-connector:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# The native transcoder (native/) is Rust (>= 1.85, built by setuptools-rust): the toolchain comes
# from the official Rust image, the C linker from Debian. Only this stage has them.
COPY --from=rust:1.95-slim-bookworm /usr/local/cargo /usr/local/cargo
COPY --from=rust:1.95-slim-bookworm /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY connector ./connector
COPY native ./native
# Every dependency has a manylinux wheel for CPython 3.11; only connector._native is compiled here.
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 pmx \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pmx
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels pmx-connector
USER 10001:10001
EXPOSE 9400
ENTRYPOINT ["pmx-connector"]
CMD ["run", "--config", "/etc/pmx-connector/config.yaml"]
