#!/usr/bin/env bash
# The GPU checks of docs/performance.md in one run:
#   1. the benchmark (benchmarks/bench.py) on the device;
#   2. host syncs of eager IndeCateR / REINFORCE / RLOO / Gumbel-Softmax steps, validation off
#      (benchmarks/host_syncs.py, torch.cuda.set_sync_debug_mode("error"));
#   3. an equal-wall-clock DVAE comparison: `catlog dvae` for DVAE_SECONDS of training per
#      estimator, then `catlog dvae-plot` against wall time.
#
# Usage (from the repository root, in the project's venv):
#   bash benchmarks/gpu.sh [--device cuda] [--out DIR] [--data-dir DIR]
# `--device cpu` runs the same steps with tiny settings (a smoke test of this script).
# Everything goes into --out (default results/gpu-<timestamp>); each step's output is also
# kept as <step>.log there. Exits non-zero if a step failed (the later steps still run).
set -u

DEVICE=cuda
OUT=""
DATA_DIR="${CATLOG_DATA:-../shared/data}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --data-dir) DATA_DIR="$2"; shift 2 ;;
        *) echo "gpu.sh: unknown argument $1 (expected --device, --out, --data-dir)" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-results/gpu-$(date +%Y%m%d-%H%M%S)}"
PYTHON="${PYTHON:-python}"

# --- the command lines (the CLI is being restructured: edit them here only) ---
DVAE_ESTIMATORS="indecater rloo-s rloo-f gs-st-s gs-st-f disarm-s"   # figure 3's, as examples/fig3_gpu_wall.toml
if [ "${DEVICE%%:*}" = cpu ]; then
    BENCH_SIZE=(--config fig2 --config dvae --estimator "IndeCateR 2" --estimator "RLOO 2"
                --min-time 0.05 --min-repeats 2 --max-repeats 3 --no-memory --threads 1)
    SYNC_SIZE=(--config fig1-12x3 --config fig2 --threads 1)
    DVAE_SECONDS=3
    DVAE_SIZE=(--train-limit 300 --eval-limit 100 --log-every 1 --threads 1)
else
    BENCH_SIZE=(--config all)
    SYNC_SIZE=(--config fig1-12x3 --config fig2 --config dvae)
    DVAE_SECONDS=120
    DVAE_SIZE=(--log-every 100)
fi
bench_command() { "$PYTHON" benchmarks/bench.py --device "$DEVICE" "${BENCH_SIZE[@]}" --out "$OUT/bench"; }
sync_command() { "$PYTHON" benchmarks/host_syncs.py --device "$DEVICE" "${SYNC_SIZE[@]}"; }
dvae_command() {  # $1: estimator name of `catlog dvae --estimator`
    "$PYTHON" -m catlog.experiments dvae --estimator "$1" --time-budget "$DVAE_SECONDS" --budget-clock wall \
        --variance-every 0 --data-dir "$DATA_DIR" --device "$DEVICE" "${DVAE_SIZE[@]}" --out "$OUT/dvae-$1"
}
dvae_plot_command() {
    "$PYTHON" -m catlog.experiments dvae-plot "${@/#/$OUT/dvae-}" --x-axis wall --output "$OUT/dvae-wall.png"
}
# ---------------------------------------------------------------------------

mkdir -p "$OUT"
failed=0
step() {  # $1: log name; the rest: the command
    local name="$1"; shift
    echo "== $name: $*"
    if "$@" 2>&1 | tee "$OUT/$name.log"; [ "${PIPESTATUS[0]}" -ne 0 ]; then
        echo "== $name FAILED (see $OUT/$name.log)"; failed=1
    fi
}

"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name() if torch.cuda.is_available() else "")' | tee "$OUT/environment.log"
step bench bench_command
step syncs sync_command
for estimator in $DVAE_ESTIMATORS; do
    step "dvae-$estimator" dvae_command "$estimator"
done
# shellcheck disable=SC2086
step dvae-plot dvae_plot_command $DVAE_ESTIMATORS
echo "results in $OUT"
exit "$failed"
