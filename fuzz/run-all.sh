#!/bin/sh
# Runs every target one after the other for SECONDS each (default 600), one job, logging to
# fuzz/logs/<target>.log. Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")"
secs=${1:-600}
shift 2>/dev/null || true
targets=${*:-"x224 tls_records x509 mcs session"}
mkdir -p logs
for t in $targets; do
    mkdir -p corpus/$t artifacts/$t
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" corpus/$t seeds/$t -- \
        -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix=artifacts/$t/ > logs/$t.log 2>&1
    echo "$t exit $?" >> logs/summary.log
done
