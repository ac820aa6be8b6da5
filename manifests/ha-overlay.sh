#!/usr/bin/env bash
# Write kustomize overlays for an HA layout of N scaler replicas (README "High availability"):
#   DIR/scaler/      the scaler as a StatefulSet of N replicas (../components/ha)
#   DIR/collectors/  the sidecar collectors with one exporter per replica
# The overlays refer to this directory's kustomizations by relative path (kustomize refuses
# absolute ones), so DIR may be anywhere on the same machine (setup.sh --ha N uses a
# temporary one). manifests/scaler-ha and
# manifests/collectors-ha are the same for N=3.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--tls] N DIR

Writes DIR/scaler/kustomization.yaml and DIR/collectors/kustomization.yaml for N
active-active scaler replicas (N >= 1), then apply them as usual:
  kubectl apply -n keda -k DIR/scaler
  kubectl apply -n <llm-d namespace> -k DIR/collectors

Options:
      --tls       build on scaler-tls and collectors-tls (with components/ha-tls)
  -h, --help      show this help
USAGE
}

TLS=0
ARGS=()
while (($# > 0)); do
  case "$1" in
    --tls)
      TLS=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      usage >&2
      printf '\nha-overlay.sh: unknown option: %s\n' "$1" >&2
      exit 2
      ;;
    *)
      ARGS+=("$1")
      shift
      ;;
  esac
done
if ((${#ARGS[@]} != 2)); then
  usage >&2
  exit 2
fi
N="${ARGS[0]}"
DIR="${ARGS[1]}"
if ! [[ $N =~ ^[1-9][0-9]*$ ]] || ((N > 99)); then
  printf 'ha-overlay.sh: N must be a whole number from 1 to 99, not %s\n' "'$N'" >&2
  exit 2
fi

suffix=""
if ((TLS)); then
  suffix="-tls"
fi
mkdir -p "$DIR/scaler" "$DIR/collectors"
# This directory, relative to DIR/scaler (= DIR/collectors).
if ! BASE="$(realpath --relative-to="$DIR/scaler" "$SCRIPT_DIR" 2>/dev/null)"; then
  BASE="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$SCRIPT_DIR" "$DIR/scaler")"
fi

{
  printf '# keda-otel-scaler as %s active-active replicas (written by manifests/ha-overlay.sh).\n' "$N"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\n'
  printf 'resources:\n  - %s/scaler%s\n\n' "$BASE" "$suffix"
  printf 'components:\n  - %s/components/ha\n' "$BASE"
  if ((TLS)); then
    printf '  - %s/components/ha-tls\n' "$BASE"
  fi
  printf '\nreplicas:\n  - name: keda-otel-scaler\n    count: %s\n' "$N"
} >"$DIR/scaler/kustomization.yaml"

{
  printf '# The sidecar collectors, one exporter per scaler replica (%s; written by manifests/ha-overlay.sh).\n' "$N"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\n'
  printf 'resources:\n  - %s/collectors%s\n\n' "$BASE" "$suffix"
  printf 'patches:\n  - target:\n      group: opentelemetry.io\n      version: v1beta1\n'
  printf '      kind: OpenTelemetryCollector\n    patch: |-\n'
  for ((i = 0; i < N; i++)); do
    printf '      - op: copy\n        from: /spec/config/exporters/otlp~1keda-otel-scaler\n'
    printf '        path: /spec/config/exporters/otlp~1keda-otel-scaler-%s\n' "$i"
    printf '      - op: replace\n        path: /spec/config/exporters/otlp~1keda-otel-scaler-%s/endpoint\n' "$i"
    printf '        value: keda-otel-scaler-%s.keda-otel-scaler-headless.keda.svc:4317\n' "$i"
  done
  printf '      - op: remove\n        path: /spec/config/exporters/otlp~1keda-otel-scaler\n'
  printf '      - op: replace\n        path: /spec/config/service/pipelines/metrics/exporters\n        value:\n'
  for ((i = 0; i < N; i++)); do
    printf '          - otlp/keda-otel-scaler-%s\n' "$i"
  done
} >"$DIR/collectors/kustomization.yaml"

printf 'wrote %s/scaler and %s/collectors (%s replicas)\n' "$DIR" "$DIR" "$N"
