#!/usr/bin/env bash
# The same job graph on the local runner and on the Ray runner (a Ray instance started on this machine for the
# run), each in a fresh work folder with the data and folds of $FER_WORKDIR: wall time of each, and Ray's
# start-up (ray.init until every node has answered the work-folder check, as the run prints it).
#   FER_WORKDIR=/path/with/data/and/folds bash scripts/compare_runners.sh [run_all flags]
#   default flags: --models baseline_cnn --seeds 0,1 --folds 0,1 --epochs 1
# Needs requirements-ray.txt installed; prints one table. The fresh folders are left under $OUT_DIR (/tmp).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SRC=${FER_WORKDIR:?set FER_WORKDIR to a work folder with data/fer2013.npz and folds/folds.csv}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/compare_runners.XXXXXX)}
FLAGS=("$@")
[ ${#FLAGS[@]} -gt 0 ] || FLAGS=(--models baseline_cnn --seeds 0,1 --folds 0,1 --epochs 1)

declare -A WALL UP
for runner in local ray; do
  work="$OUT_DIR/$runner"
  mkdir -p "$work/folds"
  ln -sfn "$(realpath "$SRC/data")" "$work/data"
  cp "$SRC/folds/folds.csv" "$work/folds/folds.csv"
  start=$(date +%s.%N)
  FER_WORKDIR=$work "$PY" -m competition.run_all --runner "$runner" "${FLAGS[@]}" > "$OUT_DIR/$runner.log" 2>&1
  WALL[$runner]=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  UP[$runner]=$(grep -oP 'ray: up in \K[0-9.]+' "$OUT_DIR/$runner.log" || echo -)
done
echo "run_all ${FLAGS[*]} (logs in $OUT_DIR)"
printf '%-7s %8s %14s\n' runner "wall s" "ray start-up s"
for runner in local ray; do printf '%-7s %8s %14s\n' "$runner" "${WALL[$runner]}" "${UP[$runner]}"; done
