#!/usr/bin/env bash
# Runs registrar.jmx with JMeter 5 in non-GUI mode against a registrar service on this machine.
# Each mode writes a JTL file and JMeter's HTML dashboard, and fails when any sampler failed.
# The script then checks the data invariants through the API with `registrar-loadgen check`,
# because JMeter cannot see an oversold group or a counter that drifted from its rows.
#
# Usage: run.sh [all|health|inscription|idempotency|performance|cleanup]   (default: all)
#   all          the four thread groups
#   health       health and monitoring only
#   inscription  normal flow with polling, and contention on the one-seat group
#   idempotency  repeats with an Idempotency-Key header
#   performance  the normal flow with more threads and loops (THREADS, LOOPS, default 50, 10)
#   cleanup      removes the result files and dashboards that this script wrote
# Environment:
#   HOST, PORT          the service (default 127.0.0.1 and 8003); HOST must be a loopback
#                       address unless ALLOW_NON_LOOPBACK=1
#   JMETER              the jmeter command (default: jmeter on PATH)
#   LOADGEN             the registrar-loadgen command for the check (default: on PATH, then the
#                       release and debug builds under CARGO_TARGET_DIR or target/)
#   RESULTS             folder for the results (default: results/ beside this script)
#   THREADS, LOOPS, RAMPUP, DURATION
#                       passed to the plan as -Jthreads, -Jloops, -Jrampup and -Jduration
#                       (seconds, the bound of every thread group, default 300)
# Exit status: 0 when every sampler passed and no invariant broke, 1 otherwise, 2 on a usage or
# set-up error.
set -euo pipefail

mode=${1:-all}
here=$(cd "$(dirname "$0")" && pwd)
results=${RESULTS:-$here/results}
host=${HOST:-127.0.0.1}
port=${PORT:-8003}
jmeter=${JMETER:-jmeter}
modes="all health inscription idempotency performance"

fail_usage() {
    echo "run.sh: $*" >&2
    exit 2
}

if [[ $mode == cleanup ]]; then
    for name in $modes; do
        rm -rf "$results/$name.jtl" "$results/$name-report" "$results/$name-jmeter.log"
    done
    rmdir "$results" 2>/dev/null || true
    echo "run.sh: removed the results of every mode from $results"
    exit 0
fi

case " $modes " in
    *" $mode "*) ;;
    *)
        fail_usage "unknown mode '$mode'; use all, health, inscription, idempotency," \
            "performance or cleanup"
        ;;
esac

case $host in
    127.* | localhost | ::1 | "[::1]") ;;
    *)
        if [[ ${ALLOW_NON_LOOPBACK:-0} != 1 ]]; then
            fail_usage "HOST=$host is not a loopback address;" \
                "set ALLOW_NON_LOOPBACK=1 for a host you run"
        fi
        ;;
esac

if ! command -v "$jmeter" >/dev/null; then
    fail_usage "jmeter not found; install JMeter 5 or set JMETER to its bin/jmeter"
fi

# Thread groups are switched off by giving them zero threads.
properties=(-Jserver="$host" -Jport="$port")
case $mode in
    all) ;;
    health) properties+=(-Jflow_threads=0 -Jcontention_threads=0 -Jidempotency_threads=0) ;;
    inscription) properties+=(-Jidempotency_threads=0 -Jhealth_threads=0) ;;
    idempotency) properties+=(-Jflow_threads=0 -Jcontention_threads=0 -Jhealth_threads=0) ;;
    performance)
        properties+=(-Jcontention_threads=0 -Jidempotency_threads=0 -Jhealth_threads=0)
        properties+=(-Jthreads="${THREADS:-50}" -Jloops="${LOOPS:-10}")
        ;;
esac
if [[ $mode != performance ]]; then
    [[ -n ${THREADS:-} ]] && properties+=(-Jthreads="$THREADS")
    [[ -n ${LOOPS:-} ]] && properties+=(-Jloops="$LOOPS")
fi
[[ -n ${RAMPUP:-} ]] && properties+=(-Jrampup="$RAMPUP")
[[ -n ${DURATION:-} ]] && properties+=(-Jduration="$DURATION")

mkdir -p "$results"
jtl="$results/$mode.jtl"
dashboard="$results/$mode-report"
# JMeter appends to an existing JTL file and refuses a dashboard folder that is not empty.
rm -rf "$jtl" "$dashboard"
"$jmeter" -n -t "$here/registrar.jmx" -l "$jtl" -j "$results/$mode-jmeter.log" \
    -e -o "$dashboard" "${properties[@]}"

# Column 8 of the JTL file is `success`; the plan's labels and thread names have no comma.
samples=$(awk 'END { print NR - 1 }' "$jtl")
failed=$(awk -F, 'NR > 1 && $8 == "false"' "$jtl" | wc -l)
echo "run.sh: $mode: $samples samples, $failed failed;" \
    "results in $jtl, dashboard in $dashboard/index.html"
status=0
if ((failed > 0)); then
    status=1
fi

if [[ $mode == health ]]; then
    exit $status
fi
loadgen=${LOADGEN:-}
if [[ -z $loadgen ]]; then
    target_dir=${CARGO_TARGET_DIR:-$here/../../target}
    for candidate in "$(command -v registrar-loadgen || true)" \
        "$target_dir/release/registrar-loadgen" "$target_dir/debug/registrar-loadgen"; do
        if [[ -n $candidate && -x $candidate ]]; then
            loadgen=$candidate
            break
        fi
    done
fi
if [[ -z $loadgen ]]; then
    echo "run.sh: registrar-loadgen not found, so the invariants were NOT checked;" \
        "build it with 'cargo build -p loadgen' or set LOADGEN" >&2
    exit 1
fi
base_url="http://$host:$port"
[[ $host == ::1 ]] && base_url="http://[::1]:$port"
check_flags=()
[[ ${ALLOW_NON_LOOPBACK:-0} == 1 ]] && check_flags+=(--allow-non-loopback)
"$loadgen" check --base-url "$base_url" "${check_flags[@]}" || status=1
exit $status
