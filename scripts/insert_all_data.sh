#!/usr/bin/env bash
# PADAM: a whole year, month by month: generate the month in production, prepare the
# warehouse (incremental load + dbt models), export the month's stats.
#
#   scripts/insert_all_data.sh YEAR            or   YEAR=2022 scripts/insert_all_data.sh
#   RANDOM_MAIN_CONTROLLER=1 ...               the quick size (default 100, the evaluation size)
#   MONTHS="11 12" ...                         only some months, in that order
#
# Every step is idempotent: rerunning the script gives byte-identical exports. It stops at
# the first failure, naming the month, the step and the command to rerun.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

YEAR="${1:-${YEAR:-}}"
if [[ -z "$YEAR" ]]; then
    echo "usage: $0 YEAR (or YEAR=2022 $0); RANDOM_MAIN_CONTROLLER=1 for the quick size" >&2
    exit 2
fi
if ! [[ "$YEAR" =~ ^[0-9]{1,4}$ ]] || ((10#$YEAR < 1 || 10#$YEAR > 9998)); then
    echo "ERROR: YEAR must be a whole number from 1 to 9998, got '$YEAR'; nothing was changed" >&2
    exit 2
fi
YEAR=$((10#$YEAR))
normalised=()
for month in ${MONTHS:-1 2 3 4 5 6 7 8 9 10 11 12}; do
    if ! [[ "$month" =~ ^[0-9]{1,2}$ ]] || ((10#$month < 1 || 10#$month > 12)); then
        echo "ERROR: MONTHS must hold months from 1 to 12, got '$month'; nothing was changed" >&2
        exit 2
    fi
    normalised+=("$((10#$month))")
done
MONTHS="${normalised[*]}"
# The size every month of this run is generated with, repeated in the resume hint.
CONTROLLER="${RANDOM_MAIN_CONTROLLER:-100}"

now() { date +%s.%N; }
generate_s=0 prepare_s=0 export_s=0
add() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN { printf "%.1f", a + c - b }'; }

step() {  # step NAME MONTH COMMAND...: run it, or say what failed and how to resume
    local name=$1 month=$2
    shift 2
    if ! "$@"; then
        echo "ERROR: insert_all_data.sh stopped at $YEAR-$month, step $name." >&2
        echo "Fix the cause above, then resume: RANDOM_MAIN_CONTROLLER=$CONTROLLER MONTHS=\"$(resume_from "$month")\" $0 $YEAR" >&2
        exit 1
    fi
}
resume_from() { local seen=0 out=(); for m in $MONTHS; do [[ $m == "$1" ]] && seen=1; ((seen)) && out+=("$m"); done; echo "${out[*]}"; }

if [[ ! -x .venv/bin/nw ]] && ! command -v nw >/dev/null; then
    echo "insert_all_data.sh: first run in this checkout: installing the project (make install)"
    make install .env
fi
if [[ -x .venv/bin/nw ]]; then NW=.venv/bin/nw; else NW=nw; fi
# The embedded server when the databases live on it (a fresh clone), else a check they answer.
"$NW" padam up || exit 1
started=$(now)
for month in $MONTHS; do
    echo "== $YEAR-$month"
    t=$(now); step generate "$month" "$NW" padam insert-month "$YEAR" "$month"; generate_s=$(add "$generate_s" "$t" "$(now)")
    t=$(now); step prepare "$month" "$NW" padam prepare; prepare_s=$(add "$prepare_s" "$t" "$(now)")
    t=$(now); step export "$month" "$NW" padam export "$YEAR" "$month"; export_s=$(add "$export_s" "$t" "$(now)")
done
total=$(add 0 "$started" "$(now)")
echo "insert_all_data.sh: $YEAR done in ${total} s (generate ${generate_s} s, prepare ${prepare_s} s, export ${export_s} s)"
