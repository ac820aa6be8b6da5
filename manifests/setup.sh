#!/usr/bin/env bash
# Install the autoscaling stack for llm-d prefill/decode on an existing cluster:
#   KEDA (Helm), the OpenTelemetry operator (Helm), keda-otel-scaler (kustomize),
#   the vLLM sidecar collectors (kustomize) and the two ScaledObjects (kustomize).
#
# Idempotent: `helm upgrade --install` and `kubectl apply` only, so it can be re-run
# after any change. See ./README.md for the whole walkthrough and --help for options.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

# Defaults (each has a flag).
NAMESPACE="default"                       # where the llm-d release `pd` runs
KEDA_NAMESPACE="keda"                     # KEDA and keda-otel-scaler
OTEL_NAMESPACE="opentelemetry-operator-system"
KEDA_VERSION="2.20.2"                     # kedacore/keda chart (= KEDA version)
OTEL_OPERATOR_VERSION=""                  # empty: latest chart in the repo
COLLECTOR_IMAGE_REPO="otel/opentelemetry-collector-contrib"
RELEASE="pd"                              # llm-d-modelservice release name
PUSH=0
TLS=0
DRY_RUN=0
RESTART=1
HA=0                                      # 0: one scaler replica; N: the HA layout with N

usage() {
  cat <<EOF
Usage: $(basename "$0") [options]

Installs, in this order:
  1. checks that cert-manager is installed (its CRDs; the OpenTelemetry operator's
     webhook and --tls need it)
  2. KEDA                    helm upgrade --install keda kedacore/keda
  3. OpenTelemetry operator  helm upgrade --install opentelemetry-operator ...
  4. keda-otel-scaler        kubectl apply -k manifests/scaler      (KEDA's namespace)
  5. sidecar collectors      kubectl apply -k manifests/collectors  (--namespace)
  6. restarts the ${RELEASE}-llm-d-modelservice-{prefill,decode} Deployments, if
     present, so their new pods get the collector sidecar
  7. ScaledObjects           kubectl apply -k manifests/keda        (--namespace)

Options:
  -n, --namespace NS          namespace of the llm-d release '${RELEASE}' (default: ${NAMESPACE})
      --keda-namespace NS     namespace for KEDA and keda-otel-scaler (default: ${KEDA_NAMESPACE});
                              other values rewrite keda-otel-scaler.keda.svc in the
                              manifests on the fly
      --otel-namespace NS     namespace for the OpenTelemetry operator (default: ${OTEL_NAMESPACE})
      --keda-version V        kedacore/keda chart version (default: ${KEDA_VERSION})
      --otel-operator-version V
                              open-telemetry/opentelemetry-operator chart version
                              (default: latest)
      --push                  use trigger type external-push (manifests/keda-push)
      --ha N                  N active-active scaler replicas (README "High availability"):
                              a StatefulSet and collectors exporting to every replica
                              (overlays from ha-overlay.sh), the peer token Secret made
                              once, and the single-replica Deployment removed
      --tls                   TLS everywhere: manifests/scaler-tls, collectors-tls and
                              keda-tls (or keda-push-tls with --push); needs cert-manager
      --no-restart            do not restart the vLLM Deployments (pods created before
                              step 5 then have no collector sidecar)
      --dry-run               print every command instead of running it
  -h, --help                  show this help

Requires kubectl and helm (not for --dry-run), a kubeconfig for the target cluster,
and cert-manager already installed.
EOF
}

TMP_FILES=()
cleanup() {
  if ((${#TMP_FILES[@]} > 0)); then
    rm -rf "${TMP_FILES[@]}"
  fi
}
trap cleanup EXIT

die() {
  printf 'setup.sh: %s\n' "$*" >&2
  exit 1
}

step() {
  printf '\n==> %s\n' "$*"
}

# Print words so that they can be pasted into a shell: plain when safe, else in
# single quotes.
shell_words() {
  local word out=""
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=" $word"
    else
      out+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s' "${out# }"
}

# Print a command, then run it unless --dry-run.
run() {
  printf '+ %s\n' "$(shell_words "$@")"
  if ((DRY_RUN)); then
    return 0
  fi
  "$@"
}

need_value() {
  # $1 = option, $2 = number of remaining args including the option
  if (($2 < 2)); then
    die "option $1 needs a value (see --help)"
  fi
}

while (($# > 0)); do
  case "$1" in
    -n | --namespace)
      need_value "$1" "$#"
      NAMESPACE="$2"
      shift 2
      ;;
    --keda-namespace)
      need_value "$1" "$#"
      KEDA_NAMESPACE="$2"
      shift 2
      ;;
    --otel-namespace)
      need_value "$1" "$#"
      OTEL_NAMESPACE="$2"
      shift 2
      ;;
    --keda-version)
      need_value "$1" "$#"
      KEDA_VERSION="$2"
      shift 2
      ;;
    --otel-operator-version)
      need_value "$1" "$#"
      OTEL_OPERATOR_VERSION="$2"
      shift 2
      ;;
    --push)
      PUSH=1
      shift
      ;;
    --tls)
      TLS=1
      shift
      ;;
    --no-restart)
      RESTART=0
      shift
      ;;
    --ha)
      need_value "$1" "$#"
      HA="$2"
      shift 2
      [[ $HA =~ ^[1-9][0-9]?$ ]] || die "--ha needs a replica count from 1 to 99, not '$HA'"
      ;;
    --dry-run)
      DRY_RUN=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      printf '\nsetup.sh: unknown option: %s\n' "$1" >&2
      exit 2
      ;;
  esac
done

# Namespaces end up in sed expressions and resource names: accept DNS labels only.
dns_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
for ns in "$NAMESPACE" "$KEDA_NAMESPACE" "$OTEL_NAMESPACE"; do
  [[ $ns =~ $dns_label && ${#ns} -le 63 ]] || die "not a valid namespace name: '$ns'"
done

# Apply a kustomization directory. The manifests address the scaler as
# keda-otel-scaler.keda.svc (ScaledObjects, collectors, server certificate) and admit
# KEDA's namespace "keda" in the NetworkPolicy; for another KEDA namespace the
# rendered output is rewritten before applying.
apply_kustomization() {
  local dir="$1" ns="$2"
  if [[ $KEDA_NAMESPACE == "keda" ]]; then
    run kubectl apply -n "$ns" -k "$dir"
    return
  fi
  local sed_svc="s/\\.keda\\.svc/.${KEDA_NAMESPACE}.svc/g"
  local sed_ns="s/kubernetes\\.io\\/metadata\\.name: keda\$/kubernetes.io\\/metadata.name: ${KEDA_NAMESPACE}/"
  local sed_short="s/keda-otel-scaler\\.keda\$/keda-otel-scaler.${KEDA_NAMESPACE}/"
  printf '+ %s | %s | %s\n' "$(shell_words kubectl kustomize "$dir")" \
    "$(shell_words sed -e "$sed_svc" -e "$sed_ns" -e "$sed_short")" \
    "$(shell_words kubectl apply -n "$ns" -f -)"
  if ((DRY_RUN)); then
    return 0
  fi
  kubectl kustomize "$dir" | sed -e "$sed_svc" -e "$sed_ns" -e "$sed_short" |
    kubectl apply -n "$ns" -f -
}

# The collectors verify the scaler's certificate with the private CA; copy its public
# certificate (ca.crt of the server Secret) into the llm-d namespace.
copy_ca_certificate() {
  local jsonpath='{.data.ca\.crt}'
  printf '+ %s | base64 -d > CA_FILE\n' \
    "$(shell_words kubectl get secret keda-otel-scaler-tls -n "$KEDA_NAMESPACE" -o "jsonpath=$jsonpath")"
  printf '+ %s | kubectl apply -f -\n' \
    "$(shell_words kubectl create secret generic keda-otel-scaler-ca-cert -n "$NAMESPACE" \
      --from-file=ca.crt=CA_FILE --dry-run=client -o yaml)"
  if ((DRY_RUN)); then
    return 0
  fi
  local ca_file
  ca_file="$(mktemp)"
  TMP_FILES+=("$ca_file")
  kubectl get secret keda-otel-scaler-tls -n "$KEDA_NAMESPACE" -o "jsonpath=$jsonpath" |
    base64 -d >"$ca_file"
  [[ -s $ca_file ]] || die "secret keda-otel-scaler-tls in $KEDA_NAMESPACE has no ca.crt"
  kubectl create secret generic keda-otel-scaler-ca-cert -n "$NAMESPACE" \
    --from-file=ca.crt="$ca_file" --dry-run=client -o yaml | kubectl apply -f -
}

# The HA replicas authenticate each other's GET /snapshot with a shared token: made once
# (random), kept on re-runs.
ensure_peer_token() {
  local secret=keda-otel-scaler-peer-token
  if ((DRY_RUN)); then
    printf '+ %s   # unless it exists\n' \
      "$(shell_words kubectl -n "$KEDA_NAMESPACE" create secret generic "$secret" --from-literal=token=RANDOM)"
    return 0
  fi
  if kubectl -n "$KEDA_NAMESPACE" get secret "$secret" >/dev/null 2>&1; then
    printf '    (secret/%s exists: kept)\n' "$secret"
    return 0
  fi
  printf '+ %s\n' "$(shell_words kubectl -n "$KEDA_NAMESPACE" create secret generic "$secret" --from-literal=token=RANDOM)"
  kubectl -n "$KEDA_NAMESPACE" create secret generic "$secret" \
    --from-literal=token="$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >/dev/null
}

restart_if_present() {
  local deploy="$1"
  if ((DRY_RUN)); then
    printf '+ %s   # if it exists\n' \
      "$(shell_words kubectl -n "$NAMESPACE" rollout restart "deployment/$deploy")"
    return 0
  fi
  if kubectl -n "$NAMESPACE" get deployment "$deploy" >/dev/null 2>&1; then
    run kubectl -n "$NAMESPACE" rollout restart "deployment/$deploy"
  else
    printf '    (deployment/%s not found in %s: install llm-d first, its pods will get the sidecar)\n' \
      "$deploy" "$NAMESPACE"
  fi
}

scaler_dir="$SCRIPT_DIR/scaler"
collectors_dir="$SCRIPT_DIR/collectors"
keda_dir="$SCRIPT_DIR/keda"
if ((TLS)); then
  scaler_dir="$SCRIPT_DIR/scaler-tls"
  collectors_dir="$SCRIPT_DIR/collectors-tls"
  keda_dir="$SCRIPT_DIR/keda-tls"
  if ((PUSH)); then
    keda_dir="$SCRIPT_DIR/keda-push-tls"
  fi
elif ((PUSH)); then
  keda_dir="$SCRIPT_DIR/keda-push"
fi
workload="deployment/keda-otel-scaler"
if ((HA)); then
  # Overlays for N replicas on top of the directories chosen above (local files only).
  ha_dir="$(mktemp -d)"
  TMP_FILES+=("$ha_dir")
  ha_args=("$HA" "$ha_dir")
  if ((TLS)); then
    ha_args=(--tls "${ha_args[@]}")
  fi
  printf '+ %s\n' "$(shell_words "$SCRIPT_DIR/ha-overlay.sh" "${ha_args[@]}")"
  "$SCRIPT_DIR/ha-overlay.sh" "${ha_args[@]}" >/dev/null
  scaler_dir="$ha_dir/scaler"
  collectors_dir="$ha_dir/collectors"
  workload="statefulset/keda-otel-scaler"
fi

if ((DRY_RUN)); then
  printf '# dry run: printing commands, running nothing\n'
else
  for tool in kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH"
  done
fi

step "1. cert-manager must already be installed"
if ! run kubectl get crd certificates.cert-manager.io; then
  die "cert-manager CRDs not found: install cert-manager first (see README.md, Prerequisites)"
fi

step "2. KEDA ${KEDA_VERSION} in namespace ${KEDA_NAMESPACE}"
run helm repo add kedacore https://kedacore.github.io/charts --force-update
run helm repo add open-telemetry https://open-telemetry.github.io/opentelemetry-helm-charts --force-update
run helm repo update kedacore open-telemetry
run helm upgrade --install keda kedacore/keda \
  --namespace "$KEDA_NAMESPACE" --create-namespace \
  --version "$KEDA_VERSION" --wait --timeout 10m

step "3. OpenTelemetry operator in namespace ${OTEL_NAMESPACE}"
otel_version_args=()
if [[ -n $OTEL_OPERATOR_VERSION ]]; then
  otel_version_args=(--version "$OTEL_OPERATOR_VERSION")
fi
# The chart requires a default collector image; the contrib distribution has the
# prometheus receiver and the filter/resourcedetection processors the sidecars use.
# Its admission webhook (which injects the sidecars) gets its certificate from
# cert-manager.
run helm upgrade --install opentelemetry-operator open-telemetry/opentelemetry-operator \
  --namespace "$OTEL_NAMESPACE" --create-namespace \
  ${otel_version_args[@]+"${otel_version_args[@]}"} \
  --set "manager.collectorImage.repository=${COLLECTOR_IMAGE_REPO}" \
  --set admissionWebhooks.certManager.enabled=true \
  --wait --timeout 10m

layout="$(basename "$scaler_dir")"
if ((HA)); then
  layout="HA, ${HA} replicas"
fi
step "4. keda-otel-scaler in namespace ${KEDA_NAMESPACE} (${layout})"
if ((HA)); then
  ensure_peer_token
fi
apply_kustomization "$scaler_dir" "$KEDA_NAMESPACE"
if ((TLS)); then
  run kubectl -n "$KEDA_NAMESPACE" wait --for=condition=Ready \
    certificate/keda-otel-scaler-server certificate/keda-otel-scaler-keda-client --timeout=180s
fi
run kubectl -n "$KEDA_NAMESPACE" rollout status "$workload" --timeout=300s
if ((HA)); then
  # Switching from one replica: the StatefulSet is Ready, the old Deployment can go.
  run kubectl -n "$KEDA_NAMESPACE" delete deployment keda-otel-scaler --ignore-not-found
fi

step "5. sidecar collectors in namespace ${NAMESPACE} ($(basename "$collectors_dir"))"
if ((TLS)); then
  copy_ca_certificate
fi
apply_kustomization "$collectors_dir" "$NAMESPACE"

step "6. restart the vLLM Deployments so the operator injects the sidecars"
if ((RESTART)); then
  restart_if_present "${RELEASE}-llm-d-modelservice-prefill"
  restart_if_present "${RELEASE}-llm-d-modelservice-decode"
else
  printf '    skipped (--no-restart)\n'
fi

step "7. ScaledObjects in namespace ${NAMESPACE} ($(basename "$keda_dir"))"
apply_kustomization "$keda_dir" "$NAMESPACE"
run kubectl -n "$NAMESPACE" get scaledobject,hpa

step "done. Watch with: kubectl -n ${NAMESPACE} get hpa,scaledobject -w"
