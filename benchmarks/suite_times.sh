#!/bin/bash
# Per-file wall and CPU time of test files, for two trees side by side (the suite's before/after).
#   bash benchmarks/suite_times.sh run ROOT LABEL FILE...   # FILE: test_x (without .py); one pytest per file
#   bash benchmarks/suite_times.sh compare BEFORE AFTER     # the table of two labels, with CPU ratios
# CPU = user + sys of pytest and every process it waited for (/usr/bin/time): on a shared, loaded
# machine it is the comparable figure; wall time there is mostly waiting. Records the load at start/end.
# PYTHON (default: python) runs pytest; OUT (default /tmp/suite_times) keeps the logs.
set -euo pipefail
out="${OUT:-/tmp/suite_times}"
mkdir -p "$out"
case "$1" in
run)
    root=$2; label=$3; shift 3
    cd "$root"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
    for f in "$@"; do
        echo "=== $f start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
        /usr/bin/time -o "$out/$label.$f.time" -f "%e %U %S" "${PYTHON:-python}" -m pytest -q -p no:cacheprovider \
            --durations=30 "tests/$f.py" > "$out/$label.$f.txt" 2>&1 || true
        read -r w u s < "$out/$label.$f.time"
        echo "$f: $(tail -1 "$out/$label.$f.txt" | cut -c1-60) wall=$w cpu=$(echo "$u + $s" | bc)" \
             "end load $(cut -d' ' -f1-3 /proc/loadavg)"
    done ;;
compare)
    before=$2; after=$3
    echo "| file | wall before | wall after | CPU before | CPU after | CPU after/before |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for t in "$out/$before".*.time; do
        f=${t#"$out/$before."}; f=${f%.time}
        [ -s "$t" ] && [ -s "$out/$after.$f.time" ] || continue  # a run still going has an empty file
        read -r wb ub sb < "$t"; read -r wa ua sa < "$out/$after.$f.time"
        cb=$(echo "$ub + $sb" | bc); ca=$(echo "$ua + $sa" | bc)
        echo "| $f | $wb | $wa | $cb | $ca | $(echo "scale=2; $ca / $cb" | bc) |"
    done ;;
*) echo "usage: $0 run ROOT LABEL FILE... | compare BEFORE AFTER" >&2; exit 2 ;;
esac
