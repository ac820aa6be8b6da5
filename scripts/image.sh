#!/usr/bin/env bash
# Build the keda-otel-scaler container image, or build it, run it and probe it from outside.
# `make image` = `scripts/image.sh build`, `make image-test` = `scripts/image.sh test`.
set -euo pipefail

PROG=image.sh

usage() {
  cat <<'EOF'
Usage: scripts/image.sh build|test [-h|--help]

  build   Build ./Dockerfile as $IMAGE (default localhost/keda-otel-scaler:dev).
          Uses ../shared/tools/build-image (buildah, no Docker engine, no registry) when it
          is there; otherwise `docker build` (if a Docker engine answers) or `podman build`.
  test    build, then run the image the way Kubernetes does (read-only root filesystem,
          tmpfs on /tmp, uid 10001, no root) on free loopback ports, wait for /readyz,
          run tests/image/probe.py (OTLP over gRPC and HTTP in, REST and KEDA GetMetrics
          out), stop it with SIGTERM and require exit status 0. Then run it again as
          kedify/otel-add-on's Helm chart v0.1.4 would (its container args and env for
          default values, uid 1000, read-only root and no writable volume, in a network
          namespace of its own on the chart's ports) and probe it from inside the
          container. Prints the image size, the time to ready and the time to stop. The
          containers are always removed.
          Exits 0 with a SKIP line only when no container tooling exists or can be
          installed at all.

Environment:
  IMAGE             image name (default localhost/keda-otel-scaler:dev)
  BUILD_IMAGE       path of the build-image tool
                    (default <repo>/../shared/tools/build-image)
  CONTAINER_ENGINE  docker or podman: skip build-image and use this engine directly
  PYTHON            interpreter for the probe (default <repo>/.venv/bin/python)
  READY_TIMEOUT     seconds to wait for /readyz (default 60)
  STOP_TIMEOUT      seconds between SIGTERM and SIGKILL on stop (default 30)
  CA_BUNDLE         CA file mounted into RUN steps by build-image and the podman fallback
                    (default /etc/ssl/certs/ca-certificates.crt)
EOF
}

say() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

case ${1:-} in
  -h | --help | help)
    usage
    exit 0
    ;;
  build | test) CMD=$1 ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    usage >&2
    say "unknown command: $1"
    exit 2
    ;;
esac
shift
if (($#)); then
  usage >&2
  say "unexpected arguments: $*"
  exit 2
fi

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null ||
  { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; })
cd "$ROOT"

IMAGE=${IMAGE:-localhost/keda-otel-scaler:dev}
BUILD_IMAGE=${BUILD_IMAGE:-$ROOT/../shared/tools/build-image}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' scaler/__init__.py)
REVISION=$(git rev-parse HEAD 2>/dev/null || true)
[[ -n $VERSION ]] || die "cannot read __version__ from scaler/__init__.py"

# ---------------------------------------------------------------- choose the tooling
SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo)
BUILDER="" # build-image | docker | podman
ENGINE=()  # command that runs and inspects the image: podman (maybe via sudo) or docker

engine_works() { # docker/podman present and able to talk to its engine
  command -v "$1" >/dev/null 2>&1 && timeout 20 "$1" info >/dev/null 2>&1
}

choose_tooling() {
  if [[ -n ${CONTAINER_ENGINE:-} ]]; then
    engine_works "$CONTAINER_ENGINE" || die "CONTAINER_ENGINE=$CONTAINER_ENGINE does not work here ($CONTAINER_ENGINE info failed)"
    BUILDER=$CONTAINER_ENGINE ENGINE=("$CONTAINER_ENGINE")
    return 0
  fi
  if [[ -f $BUILD_IMAGE ]]; then
    # build-image needs root (it re-runs itself with sudo) and builds into root's podman storage.
    BUILDER=build-image ENGINE=("${SUDO[@]}" podman)
    return 0
  fi
  if [[ -d $ROOT/../shared ]]; then
    say "build-image not found at $BUILD_IMAGE; falling back to docker or podman"
  else
    say "the shared tools directory ($ROOT/../shared) is missing, so is build-image; falling back to docker or podman"
  fi
  if engine_works docker; then
    BUILDER=docker ENGINE=(docker)
  elif engine_works podman; then
    BUILDER=podman ENGINE=(podman)
  elif command -v apt-get >/dev/null 2>&1 && { [[ $EUID -eq 0 ]] || sudo -n true 2>/dev/null; }; then
    say "no working docker or podman; installing podman with apt-get"
    if "${SUDO[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        podman buildah runc fuse-overlayfs uidmap >/dev/null && engine_works podman; then
      BUILDER=podman ENGINE=(podman)
    fi
  fi
  [[ -n $BUILDER ]]
}

build() {
  local t0 args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
  t0=$(now)
  say "building $IMAGE (version $VERSION) with $BUILDER"
  case $BUILDER in
    build-image)
      if [[ -x $BUILD_IMAGE ]]; then
        "$BUILD_IMAGE" -t "$IMAGE" "${args[@]}" "$ROOT"
      else
        bash "$BUILD_IMAGE" -t "$IMAGE" "${args[@]}" "$ROOT"
      fi
      ;;
    podman)
      # Like build-image: RUN steps see the host's CA bundle, for pip behind a TLS-inspecting proxy.
      [[ -f $CA_BUNDLE ]] && args+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
      podman build -t "$IMAGE" "${args[@]}" "$ROOT"
      ;;
    *) "$BUILDER" build -t "$IMAGE" "${args[@]}" "$ROOT" ;;
  esac
  say "built $IMAGE in $(elapsed "$t0") s"
}

if ! choose_tooling; then
  if [[ $CMD == test ]]; then
    echo "SKIP: image test: no container tooling here (no $BUILD_IMAGE, no working docker or podman, and podman could not be installed)"
    exit 0
  fi
  die "no container tooling: no $BUILD_IMAGE, no working docker or podman, and podman could not be installed"
fi

build
[[ $CMD == build ]] && exit 0

# ---------------------------------------------------------------- test
[[ -x $PYTHON ]] || die "no Python for the probe at $PYTHON (run 'make venv', or set PYTHON)"
CONTAINER=keda-otel-scaler-image-test-$$
KEDIFY_CONTAINER=$CONTAINER-kedify-chart
cleanup() {
  for c in "$CONTAINER" "$KEDIFY_CONTAINER"; do
    "${ENGINE[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || "${ENGINE[@]}" rm -f "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inspect_image() { "${ENGINE[@]}" image inspect --format "$1" "$IMAGE"; }
show_logs() {
  say "container log (last 40 lines):"
  "${ENGINE[@]}" logs "$CONTAINER" 2>&1 | tail -40 >&2 || true
}
fail() {
  say "FAIL: $*"
  show_logs
  exit 1
}

# The image's own metadata: what Kubernetes and users rely on.
user=$(inspect_image '{{.Config.User}}')
[[ $user == 10001:10001 ]] || fail "image user is '$user', want 10001:10001"
entrypoint=$(inspect_image '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')
[[ $entrypoint == '["keda-otel-scaler"] ["serve"]' ]] || fail "entrypoint/cmd are $entrypoint"
# shellcheck disable=SC2016 # a Go template, not a shell expansion
exposed=$(inspect_image '{{range $p, $v := .Config.ExposedPorts}}{{$p}},{{end}}')
for p in 4317 4318 8080 9090; do [[ $exposed == *"$p/tcp"* ]] || fail "port $p is not exposed (exposed: $exposed)"; done
label=$(inspect_image '{{index .Config.Labels "org.opencontainers.image.version"}}')
[[ $label == "$VERSION" ]] || fail "label org.opencontainers.image.version is '$label', want $VERSION"
say "image metadata OK: user $user, entrypoint $entrypoint, ports ${exposed%,}, version $label"

# Free loopback ports (--network host shares the host's ports, so avoid the defaults).
read -r HTTP_PORT OTLP_PORT KEDA_PORT METRICS_PORT < <("$PYTHON" - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

run=("${ENGINE[@]}")
base_run=()
if [[ ${ENGINE[-1]} == podman ]]; then
  # crun cannot start containers here and rlimits may not exceed the host's hard limits
  # (see ../shared/tools/README.md): runc, nofile/nproc capped at the hard limits.
  limit() {
    local v
    v=$(ulimit -H"$1")
    [[ $v == unlimited || $v -gt $2 ]] && v=$2
    echo "$v:$v"
  }
  base_run=(--runtime runc run --ulimit "nofile=$(limit n 1048576)" --ulimit "nproc=$(limit u 4096)")
else
  base_run=(run)
fi
run+=("${base_run[@]}")
# As in manifests/scaler: read-only root, a tmpfs /tmp (the emptyDir), uid/gid 10001,
# no capabilities, no privilege escalation. --network host keeps traffic on loopback.
run+=(-d --name "$CONTAINER" --network host --read-only --tmpfs /tmp --user 10001:10001
  --cap-drop ALL --security-opt no-new-privileges
  -e LISTEN_ADDRESS=127.0.0.1 -e REST_API_PORT="$HTTP_PORT" -e OTLP_RECEIVER_PORT="$OTLP_PORT"
  -e KEDA_EXTERNAL_SCALER_PORT="$KEDA_PORT" -e INTERNAL_METRICS_PORT="$METRICS_PORT" -e SHUTDOWN_GRACE_SECONDS=5 "$IMAGE")

say "starting $IMAGE on 127.0.0.1 (http $HTTP_PORT, otlp $OTLP_PORT, keda $KEDA_PORT, metrics $METRICS_PORT)"
t_start=$(now)
"${run[@]}" >/dev/null || die "could not start the container"
deadline=$((SECONDS + READY_TIMEOUT))
ready() { # /readyz answers 200
  if command -v curl >/dev/null 2>&1; then
    curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$HTTP_PORT/readyz"
  else
    "$PYTHON" -c 'import sys, urllib.request
try:
    sys.exit(urllib.request.urlopen(sys.argv[1], timeout=1).status != 200)
except Exception:
    sys.exit(1)' "http://127.0.0.1:$HTTP_PORT/readyz"
  fi
}
until ready; do
  state=$("${ENGINE[@]}" inspect --format '{{.State.Status}}' "$CONTAINER" 2>/dev/null || echo gone)
  [[ $state == running ]] || fail "the container stopped before /readyz answered (state: $state)"
  ((SECONDS < deadline)) || fail "/readyz did not answer 200 within ${READY_TIMEOUT}s"
  sleep 0.05
done
READY_S=$(elapsed "$t_start")
say "ready: /readyz answered 200 ${READY_S} s after 'run'"

say "probing with tests/image/probe.py"
"$PYTHON" tests/image/probe.py --http-port "$HTTP_PORT" --otlp-port "$OTLP_PORT" --keda-port "$KEDA_PORT" \
  --metrics-port "$METRICS_PORT" ||
  fail "the probe failed (its output is above)"

# The builder stage compiled the native extension; the final image must hold no compiler.
compilers=$("${ENGINE[@]}" exec "$CONTAINER" /opt/venv/bin/python -c 'import shutil
names = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
print(" ".join(shutil.which(n) for n in names if shutil.which(n)))') || fail "could not look for compilers in the image"
[[ -z $compilers ]] || fail "the final image holds a compiler: $compilers"
say "no compiler in the final image"

# The service writes nothing at run time; show what landed on the /tmp tmpfs, if anything.
tmp_files=$("${ENGINE[@]}" exec "$CONTAINER" find /tmp -mindepth 1 2>/dev/null | head -5 || true)
if [[ -z $tmp_files ]]; then
  say "nothing was written to /tmp"
else
  say "files in /tmp: $(tr '\n' ' ' <<<"$tmp_files")"
fi

say "stopping (SIGTERM, up to ${STOP_TIMEOUT}s before SIGKILL)"
t_stop=$(now)
"${ENGINE[@]}" stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null || fail "'stop' failed"
STOP_S=$(elapsed "$t_stop")
code=$("${ENGINE[@]}" inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[[ $code == 0 ]] || fail "the container exited with status $code after SIGTERM, want 0"
say "stopped in ${STOP_S} s with exit status 0"
"${ENGINE[@]}" logs "$CONTAINER" 2>&1 | tail -5 | sed 's/^/    | /' >&2 || true

# ---------------------------------------------------------------- under kedify/otel-add-on's chart
# What helmchart/otel-add-on v0.1.4 renders for its default values (templates/deployment.yaml:44-94,
# values.yaml; tests/integration/test_kedify_chart.py has the sources): these args replace the
# image's CMD; the pod runs as uid 1000 with a read-only root file system and no writable volume.
# --network none: a namespace of its own, so the chart's fixed ports and bind-all address are used.
CONTAINER=$KEDIFY_CONTAINER
say "running $IMAGE as kedify/otel-add-on's chart does (uid 1000, its args and env, ports 4317/4318/8080/9090)"
"${ENGINE[@]}" "${base_run[@]}" -d --name "$CONTAINER" --network none --read-only --user 1000:1000 \
  --cap-drop ALL --security-opt no-new-privileges \
  -e OTLP_RECEIVER_PORT=4317 -e KEDA_EXTERNAL_SCALER_PORT=4318 -e INTERNAL_METRICS_PORT=8080 -e REST_API_PORT=9090 \
  -e METRIC_STORE_RETENTION_SECONDS=120 -e METRIC_STORE_LAZY_SERIES=false -e METRIC_STORE_LAZY_AGGREGATES=false \
  -e METRIC_STORE_ERROR_IF_NOT_FOUND=false -e METRIC_STORE_VALUE_IF_NOT_FOUND=0 -e IS_ACTIVE_POLLING_INTERVAL_MS=500 \
  -e OTLP_TLS_CA_FILE= -e OTLP_TLS_CERT_FILE= -e OTLP_TLS_KEY_FILE= -e OTLP_CERTIFICATE_RELOAD_INTERVAL=5m \
  -e KEDA_TLS_ENABLED=false -e KEDA_TLS_CERT_FILE= -e KEDA_TLS_KEY_FILE= \
  "$IMAGE" --zap-log-level=info --zap-stacktrace-level=error >/dev/null || die "could not start the container"
deadline=$((SECONDS + READY_TIMEOUT))
# The chart's probes: GET /info on the REST port answers 200.
until "${ENGINE[@]}" exec "$CONTAINER" python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:9090/info", timeout=1)' 2>/dev/null; do
  state=$("${ENGINE[@]}" inspect --format '{{.State.Status}}' "$CONTAINER" 2>/dev/null || echo gone)
  [[ $state == running ]] || fail "the container stopped before GET /info answered (state: $state)"
  ((SECONDS < deadline)) || fail "GET /info did not answer within ${READY_TIMEOUT}s"
  sleep 0.2
done
say "probing from inside the container"
"${ENGINE[@]}" exec -i "$CONTAINER" python - --http-port 9090 --otlp-port 4317 --keda-port 4318 --metrics-port 8080 \
  <tests/image/probe.py || fail "the probe failed under kedify's chart settings (its output is above)"
# The log is read whole before grep: with pipefail, `logs | grep -q` fails when grep exits at its first
# match and the engine's write gets SIGPIPE.
container_log=$("${ENGINE[@]}" logs "$CONTAINER" 2>&1) || fail "'logs' failed"
grep -qF "kedify/otel-add-on logging flags mapped to --log-level=info" <<<"$container_log" ||
  fail "no log line about kedify's --zap-* flags"
"${ENGINE[@]}" stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null || fail "'stop' failed"
code=$("${ENGINE[@]}" inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[[ $code == 0 ]] || fail "under kedify's chart settings the container exited with status $code after SIGTERM, want 0"
say "under kedify's chart settings: probe passed, exit status 0 after SIGTERM"

size=$(inspect_image '{{.Size}}')
base_size=$("${ENGINE[@]}" image inspect --format '{{.Size}}' python:3.11-slim 2>/dev/null || echo 0)
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1e6 }')
added_mb=$(awk -v s="$size" -v b="$base_size" 'BEGIN { printf "%.0f", (s - b) / 1e6 }')
echo "image $IMAGE: ${size_mb} MB (${size} bytes; ${added_mb} MB on top of python:3.11-slim)"
echo "ready after ${READY_S} s; stopped after ${STOP_S} s with exit status 0"
echo "image test passed"
