# Shared by bench/gpu_suite.sh and bench/cpu_suite.sh (sourced, not run): each step runs under
# its own time limit and is remembered, a step that fails or runs out does not stop the next,
# and finish_suite writes the summary JSON and exits non-zero when any step failed.
# The caller sets SKIP (" name name ... ") before calling step.
STEPS=()

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
