# Shared by bench/gpu_suite.sh and bench/cpu_suite.sh (sourced, not run): each step runs under
# its own time limit and is remembered, a step that fails or runs out does not stop the next,
# and finish_suite writes the summary JSON and exits non-zero when any step failed.
# The caller sets ROOT, MODE (its default mode) and, to take --tag, TAG, then sources this
# file and calls suite_setup "$@".
STEPS=()
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
OUT="$ROOT/bench/results"
SKIP=" "

suite_setup() {  # suite_setup ARGS...: --smoke, --out DIR, --skip STEP, [--tag NAME]; env
    local usage="usage: bench/$(basename "$0") [--smoke] [--out DIR]${TAG:+ [--tag NAME]}"
    usage="$usage [--skip STEP]..."
    while [ $# -gt 0 ]; do
        case "$1" in
            --smoke) MODE=smoke ;;
            --out) OUT="$2"; shift ;;
            --skip) SKIP="$SKIP$2 "; shift ;;
            --tag) [ -n "$TAG" ] || { echo "$usage" >&2; exit 2; }; TAG="$2"; shift ;;
            *) echo "$usage" >&2; exit 2 ;;
        esac
        shift
    done
    mkdir -p "$OUT"
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    export HF_HUB_OFFLINE=1
    DATA="${CELLSEG_DATA:-$ROOT/../shared/data}"
}

step() {  # step NAME SECONDS COMMAND...: run with a limit, remember how it ended
    local name="$1" limit="$2"
    shift 2
    case "$SKIP" in *" $name "*) echo "== $name skipped"; return ;; esac
    echo "== $name (limit ${limit} s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    STEPS+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start))}")
    [ $rc -eq 0 ] || echo "!! $name ended with status $rc" >&2
}

finish_suite() {  # finish_suite SUMMARY_PATH MODE [EXTRA_JSON_FIELDS]: write it, exit 0 or 1
    local summary="$1" mode="$2" extra="${3:-}"
    local joined
    joined="$(IFS=,; echo "${STEPS[*]}")"
    printf '{"mode": "%s"%s, "steps": [%s]}\n' "$mode" "$extra" "$joined" > "$summary"
    echo "wrote $summary"
    local failed=0 s
    for s in "${STEPS[@]}"; do
        case "$s" in *'"rc": 0,'*) ;; *) failed=1 ;; esac
    done
    exit $failed
}
