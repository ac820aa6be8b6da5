#!/usr/bin/env bash
# Send OpenAI /v1/completions requests for facebook/opt-125m through the inference
# Gateway, to drive the prefill and decode ScaledObjects.
#
#   --mode repeated  the same prompt every time: after the first request the chosen
#                    decode pod has it cached, the EPP's prefix-based decider keeps the
#                    requests decode-only and prefill is skipped -> decode scales.
#   --mode unique    a new long random prompt per request (random from the first word,
#                    so no prefix is shared): the non-cached part exceeds the decider's
#                    threshold, a prefill pod runs every prefill -> prefill scales too.
#
# Bounded by --count and/or --duration (whichever comes first). See --help.
set -euo pipefail

GATEWAY="inference-gateway"
GATEWAY_NAMESPACE=""
PORT=80
URL=""
MODE="repeated"
COUNT=""
DURATION=""
CONCURRENCY=4
MODEL="facebook/opt-125m"
MAX_TOKENS=64
PROMPT_WORDS=1000
TIMEOUT=120
QUIET=0

usage() {
  cat <<EOF
Usage: $(basename "$0") [options]

Target (one of):
      --url URL             base URL of the OpenAI API, e.g. http://10.0.0.5
      --gateway NAME        Gateway whose .status.addresses[0].value to use
                            (default: ${GATEWAY}); needs kubectl
      --gateway-namespace NS  its namespace (default: kubectl's current namespace)
      --port P              Gateway listener port (default: ${PORT})

Load:
      --mode repeated|unique  one fixed prompt (prefix cache => prefill skipped), or
                            a new random prompt per request (default: ${MODE})
      --count N             total number of requests
      --duration S          stop starting new requests after S seconds
                            (without --count and --duration: --count 100)
      --concurrency C       parallel request loops (default: ${CONCURRENCY})
      --model NAME          model field (default: ${MODEL})
      --max-tokens N        tokens to generate per request (default: ${MAX_TOKENS})
      --prompt-words N      prompt length in words, ~1 token per word for OPT's
                            tokenizer (default: ${PROMPT_WORDS}; prompt + max-tokens
                            must stay under opt-125m's 2048-token context)
      --timeout S           per-request timeout (default: ${TIMEOUT})
  -q, --quiet               print only the summary
  -h, --help                show this help

Prints one line per request (worker, status, seconds) and a summary. Exits 1 if no
request succeeded.
EOF
}

die() {
  printf 'loadgeneration.sh: %s\n' "$*" >&2
  exit 2
}

need_value() {
  if (($2 < 2)); then
    die "option $1 needs a value (see --help)"
  fi
}

positive_int() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

while (($# > 0)); do
  case "$1" in
    --url)
      need_value "$1" "$#"
      URL="$2"
      shift 2
      ;;
    --gateway)
      need_value "$1" "$#"
      GATEWAY="$2"
      shift 2
      ;;
    --gateway-namespace)
      need_value "$1" "$#"
      GATEWAY_NAMESPACE="$2"
      shift 2
      ;;
    --port)
      need_value "$1" "$#"
      PORT="$2"
      shift 2
      ;;
    --mode)
      need_value "$1" "$#"
      MODE="$2"
      shift 2
      ;;
    --count)
      need_value "$1" "$#"
      COUNT="$2"
      shift 2
      ;;
    --duration)
      need_value "$1" "$#"
      DURATION="$2"
      shift 2
      ;;
    --concurrency)
      need_value "$1" "$#"
      CONCURRENCY="$2"
      shift 2
      ;;
    --model)
      need_value "$1" "$#"
      MODEL="$2"
      shift 2
      ;;
    --max-tokens)
      need_value "$1" "$#"
      MAX_TOKENS="$2"
      shift 2
      ;;
    --prompt-words)
      need_value "$1" "$#"
      PROMPT_WORDS="$2"
      shift 2
      ;;
    --timeout)
      need_value "$1" "$#"
      TIMEOUT="$2"
      shift 2
      ;;
    -q | --quiet)
      QUIET=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      printf '\nloadgeneration.sh: unknown option: %s\n' "$1" >&2
      exit 2
      ;;
  esac
done

case "$MODE" in
  repeated | unique) ;;
  *) die "--mode must be 'repeated' or 'unique', got '$MODE'" ;;
esac
if [[ -z $COUNT && -z $DURATION ]]; then
  COUNT=100
fi
[[ -z $COUNT ]] || positive_int --count "$COUNT"
[[ -z $DURATION ]] || positive_int --duration "$DURATION"
positive_int --concurrency "$CONCURRENCY"
positive_int --max-tokens "$MAX_TOKENS"
positive_int --prompt-words "$PROMPT_WORDS"
positive_int --timeout "$TIMEOUT"
positive_int --port "$PORT"
# The model name goes into JSON unescaped.
[[ $MODEL =~ ^[A-Za-z0-9._/:-]+$ ]] || die "unsupported characters in --model '$MODEL'"
command -v curl >/dev/null 2>&1 || die "curl not found in PATH"

if [[ -z $URL ]]; then
  command -v kubectl >/dev/null 2>&1 || die "kubectl not found; pass --url instead"
  ns_args=()
  if [[ -n $GATEWAY_NAMESPACE ]]; then
    ns_args=(-n "$GATEWAY_NAMESPACE")
  fi
  address="$(kubectl get gateway "$GATEWAY" ${ns_args[@]+"${ns_args[@]}"} \
    -o jsonpath='{.status.addresses[0].value}')"
  [[ -n $address ]] || die "gateway '$GATEWAY' has no address yet (kubectl get gateway $GATEWAY)"
  URL="http://${address}"
  if [[ $PORT != 80 ]]; then
    URL="${URL}:${PORT}"
  fi
fi
ENDPOINT="${URL%/}/v1/completions"

# Common English words: each is one token (with its leading space) for OPT's GPT-2
# BPE tokenizer, so --prompt-words approximates the prompt length in tokens.
WORDS=(the of and to in is was for on that with as by at from his an were are which
  this be had not but have they one first new two has all after also there who
  their its other time can year been would more city school during when out into
  over such most some only than many world made between under three through may up
  team known music river house game war later state water history work light small
  open road west north south east since held member name part station power high
  long life story early local area family people great show film book group day)

# Random words, random from the first word: no two prompts share a prefix.
random_text() {
  local n="$1" i out=""
  for ((i = 0; i < n; i++)); do
    out+="${WORDS[RANDOM % ${#WORDS[@]}]} "
  done
  printf '%s' "${out% }"
}

# The fixed prompt of --mode repeated: deterministic, same length as the unique ones.
fixed_text() {
  local n="$1" i out=""
  for ((i = 0; i < n; i++)); do
    out+="${WORDS[(i * 7) % ${#WORDS[@]}]} "
  done
  printf '%s' "${out% }"
}

FIXED_PROMPT=""
if [[ $MODE == repeated ]]; then
  FIXED_PROMPT="Summarize the following text. $(fixed_text "$PROMPT_WORDS")"
fi

now() {
  printf '%(%s)T' -1
}

START="$(now)"
DEADLINE=""
if [[ -n $DURATION ]]; then
  DEADLINE=$((START + DURATION))
fi

WORKDIR="$(mktemp -d)"
cleanup() {
  rm -rf "$WORKDIR"
}
stop_workers() {
  local pids
  pids="$(jobs -p)"
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086  # one pid per word
    kill $pids 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  cleanup
  exit 130
}
trap cleanup EXIT
trap stop_workers INT TERM

# One request loop. $1 = worker id, $2 = its share of --count ("" = unlimited).
worker() {
  local id="$1" budget="$2" sent=0 prompt body result
  local log="$WORKDIR/worker-$id.log"
  : >"$log"
  while :; do
    if [[ -n $budget ]] && ((sent >= budget)); then
      break
    fi
    if [[ -n $DEADLINE ]] && (($(now) >= DEADLINE)); then
      break
    fi
    if [[ $MODE == unique ]]; then
      prompt="Request ${id}-${sent}-${RANDOM}${RANDOM}: $(random_text "$PROMPT_WORDS")"
    else
      prompt="$FIXED_PROMPT"
    fi
    body="{\"model\":\"${MODEL}\",\"prompt\":\"${prompt}\",\"max_tokens\":${MAX_TOKENS},\"temperature\":0}"
    # curl prints "000" as the status when it could not get a response.
    result="$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' \
      --max-time "$TIMEOUT" -H 'Content-Type: application/json' \
      --data-binary @- "$ENDPOINT" <<<"$body" 2>/dev/null)" || true
    [[ -n $result ]] || result="000 0"
    sent=$((sent + 1))
    printf '%s\n' "$result" >>"$log"
    if ((!QUIET)); then
      printf 'worker=%s n=%s status=%s seconds=%s\n' "$id" "$sent" "${result% *}" "${result#* }"
    fi
  done
}

printf 'mode=%s endpoint=%s model=%s concurrency=%s count=%s duration=%s prompt_words=%s max_tokens=%s\n' \
  "$MODE" "$ENDPOINT" "$MODEL" "$CONCURRENCY" "${COUNT:-unbounded}" "${DURATION:-unbounded}" \
  "$PROMPT_WORDS" "$MAX_TOKENS"

for ((w = 1; w <= CONCURRENCY; w++)); do
  share=""
  if [[ -n $COUNT ]]; then
    # Spread --count over the workers: the first COUNT % C get one more.
    share=$((COUNT / CONCURRENCY + (w <= COUNT % CONCURRENCY ? 1 : 0)))
    ((share > 0)) || continue
  fi
  worker "$w" "$share" &
done
wait

cat "$WORKDIR"/worker-*.log 2>/dev/null | awk -v elapsed="$(($(now) - START))" '
  { total++; if ($1 ~ /^2/) { ok++; sum += $2 } else { failed++ } }
  END {
    printf "summary: requests=%d ok=%d failed=%d", total, ok, failed
    if (ok > 0) printf " mean_seconds=%.3f", sum / ok
    printf " elapsed_seconds=%d\n", elapsed
    exit (ok > 0 ? 0 : 1)
  }'
