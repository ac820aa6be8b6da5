# keda-otel-scaler container image.
#
#   docker build -t keda-otel-scaler .          (or: bash scripts/image.sh build, no Docker engine needed)
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 9090:9090 keda-otel-scaler
#
# Two stages: the builder compiles the native OTLP ingest extension and installs the project
# and its pinned runtime dependencies into a virtualenv at /opt/venv; the runtime stage gets
# only that venv (no compilers, no pip, no caches, no sources besides the installed package) and runs as the numeric non-root user
# 10001:10001. Nothing is written at run time, so a read-only root filesystem works.

# ---------------------------------------------------------------- builder
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# A C compiler for the extension, in this stage only, and Python's headers when the base
# image lacks them (the official image has them; a Debian-based stand-in for it, such as
# ../shared/tools/build-image synthesizes, needs python3-dev).
# A current pip in the builder (it is removed again below): the base image's may predate
# the wheel metadata (PEP 639 licence fields) that setuptools >= 77 writes.
RUN headers=$(python -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["include"], "Python.h"))') \
 && packages="gcc libc6-dev" && { [ -f "$headers" ] || packages="$packages python3-dev"; } \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -q --upgrade pip
WORKDIR /src

# 1. Runtime dependencies only (cached until pyproject.toml or the pins change): the ranges in
#    pyproject.toml, constrained to the versions pinned in requirements-dev.txt (what CI tests).
COPY pyproject.toml requirements-dev.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > runtime-requirements.txt \
 && /opt/venv/bin/pip install -r runtime-requirements.txt -c requirements-dev.txt

# 2. The project itself, built as a wheel from the context (compiling scaler/_native against
#    numpy's headers, fetched into pip's isolated build environment) and installed without
#    dependencies; the import check (from /, not the sources in /src) fails the build if the
#    extension did not make it in.
#    Then drop pip and setuptools (the runtime needs neither) and numpy's own test suites
#    (17 MB), and byte-compile everything with unchecked-hash .pyc files, valid whatever
#    timestamps COPY gives the sources: the runtime filesystem is read-only, so Python could
#    never cache bytecode itself, and start-up is faster with it.
COPY README.md setup.py ./
COPY scaler/ scaler/
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/keda_otel_scaler-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/keda-otel-scaler --version \
 && (cd / && /opt/venv/bin/python -c 'import scaler._native.otlpwire, scaler._native.gather') \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && rm -rf /opt/venv/bin/pip* /tmp/wheels \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/numpy/*' -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib >/dev/null

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim

ARG VERSION=dev
ARG REVISION=""
ARG SOURCE=https://github.com/keda-otel-scaler/keda-otel-scaler
LABEL org.opencontainers.image.title="keda-otel-scaler" \
      org.opencontainers.image.description="KEDA external scaler fed by OpenTelemetry metrics: scale llm-d prefill and decode independently" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# A named account for uid/gid 10001 (getpwuid works, logs show a name); no home directory.
RUN groupadd --gid 10001 scaler \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init --home-dir /nonexistent \
        --shell /usr/sbin/nologin scaler

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

USER 10001:10001
WORKDIR /tmp

# 4317 OTLP/gRPC receiver, 4318 KEDA external scaler (gRPC), 9090 HTTP (REST, Prometheus API,
# OTLP/HTTP, /healthz, /readyz, /metrics), 8080 /metrics alone (kedify/otel-add-on's internal-metrics port).
EXPOSE 4317 4318 8080 9090

# No HEALTHCHECK: Kubernetes uses the probes in manifests/scaler (/healthz, /readyz), and OCI
# images (podman, buildah) drop it anyway. The image has no curl; with Docker, use e.g.
#   --health-cmd 'python -c "import urllib.request as u; u.urlopen(\"http://127.0.0.1:9090/readyz\")"'

ENTRYPOINT ["keda-otel-scaler"]
CMD ["serve"]
