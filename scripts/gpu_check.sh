#!/usr/bin/env bash
# The whole GPU check in one command, for the lent GPU machine, from the repo root:
#   bash scripts/gpu_check.sh
# Before (here, where the data is):  ./run.sh download --from PATH && python3 scripts/pack_data.py pack
# and, for the bench's reference column, cp312 wheels of albumentations 2.0.8, albucore, pydantic, pydantic-core,
# annotated-types, typing-inspection, typing-extensions, stringzilla, simsimd in gpu_data/wheels (7.6 MiB;
# `pip download --no-deps --only-binary=:all: --python-version 3.12 ...` as the device README shows);
# then the device tool's run with carry ["gpu_data"] and the command above. Steps, each timed:
#   a. unpack the dataset cache from $PACK (scripts/pack_data.py unpack; skipped when it holds the same bytes)
#   b. $PY -m competition.run_all --device $DEVICE --models $MODELS $EXTRA   (folds, training, ensemble, report)
#   c. $PY -m competition.bench --device $DEVICE --models $MODELS --steps $BENCH_STEPS   (markdown table)
#   d. the total wall time
# Settings (environment): PY (python3), MODELS (baseline_cnn,bn_cnn,resnet_cbam,resnet_cbam48), DEVICE (cuda),
# EXTRA (more run_all flags, empty), BENCH_STEPS (40), FER_WORKDIR (the repo), PACK (gpu_data/fer2013.npz.xz),
# WHEELS (gpu_data/wheels: *.whl there are installed with pip --no-index into /tmp/gpu_check_site first,
# e.g. albumentations and its needs, which competition.bench's reference column imports).
# With $OUT set: the log is teed to $OUT/gpu_check.log (unless the caller already writes that file, e.g. with
# `2>&1 | tee $OUT/gpu_check.log`), and $OUT/gpu_check_results.tar.gz gets the fold files (done.json, log.csv,
# config.json, oof.npz, test.npz; refits too), folds.csv, submissions/{leaderboard,submission}.csv and reports/<name>/,
# written after training and again at the end, also when a step fails. Were it over 16 MiB, the logits go to
# $OUT/gpu_check_logits_<model>.tar.gz instead. run_all failing does not stop the bench; the exit status is
# the first failing step's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

PY=${PY:-python3}
MODELS=${MODELS:-baseline_cnn,bn_cnn,resnet_cbam,resnet_cbam48}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
BENCH_STEPS=${BENCH_STEPS:-40}
PACK=${PACK:-gpu_data/fer2013.npz.xz}
WHEELS=${WHEELS:-gpu_data/wheels}
OUT=${OUT:-}
export FER_WORKDIR=${FER_WORKDIR:-$REPO}
export PYTHONUNBUFFERED=1
LIMIT=$((16 * 1024 * 1024 - 64 * 1024))  # what one file back from $OUT may weigh, less a margin

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

# ---------------------------------------------------------------- the log
held_open() {  # is file $1 open in some process (a caller's `| tee FILE`)?
  local fd
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$1" ] && return 0
  done
  return 1
}
trap '' PIPE  # if a tee (ours or the caller's) is killed with us, writing the results must still go on
TEE_PID=
if [ -n "$OUT" ]; then
  mkdir -p "$OUT"
  LOG=$(realpath -m "$OUT/gpu_check.log")
  if held_open "$LOG"; then
    echo "gpu_check: $LOG is already written by the caller: not teeing into it again"
  else
    exec 3>&1 4>&2
    exec > >(tee "$LOG" >&3) 2>&1
    TEE_PID=$!
  fi
fi

# ---------------------------------------------------------------- bringing the results back
pack_results() {  # $OUT/gpu_check_results.tar.gz (+ logits per model when over LIMIT); never fails the script
  [ -n "$OUT" ] || return 0
  (
    set +e
    shopt -s nullglob
    cd "$FER_WORKDIR" 2>/dev/null || exit 0
    small=() logits=()
    for f in folds/folds.csv folds/*/{fold*,refit}/done.json folds/*/{fold*,refit}/log.csv \
             folds/*/{fold*,refit}/config.json \
             submissions/leaderboard.csv submissions/submission.csv reports/*/; do
      [ -e "$f" ] && [ "$f" != reports/example/ ] && small+=("$f")
    done
    for f in folds/*/fold*/oof.npz folds/*/{fold*,refit}/test.npz; do logits+=("$f"); done
    tarball="$OUT/gpu_check_results.tar.gz"
    if [ $((${#small[@]} + ${#logits[@]})) -eq 0 ]; then
      echo "results: nothing to bring back yet under $FER_WORKDIR"
      exit 0
    fi
    rm -f "$OUT"/gpu_check_logits_*.tar.gz
    tar -czf "$tarball" "${small[@]}" "${logits[@]}"
    if [ "$(stat -c %s "$tarball")" -gt "$LIMIT" ] && [ ${#logits[@]} -gt 0 ]; then
      [ ${#small[@]} -gt 0 ] && tar -czf "$tarball" "${small[@]}" || rm -f "$tarball"
      for dir in folds/*/; do
        model=$(basename "$dir")
        files=("$dir"fold*/oof.npz "$dir"{fold*,refit}/test.npz)
        [ ${#files[@]} -gt 0 ] && tar -czf "$OUT/gpu_check_logits_$model.tar.gz" "${files[@]}"
      done
    fi
    for f in "$OUT"/gpu_check_results.tar.gz "$OUT"/gpu_check_logits_*.tar.gz; do
      size=$(stat -c %s "$f")
      echo "results: $f $(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }')" \
           "($(tar -tzf "$f" | wc -l) files)$([ "$size" -gt "$LIMIT" ] && echo ': OVER 16 MiB, will not come back')"
    done
  )
}

finish() {
  local rc=$?
  trap - EXIT
  set +e  # from here on, a failed write (a dead tee) must not change the exit status
  if [ -n "$TEE_PID" ] && ! kill -0 "$TEE_PID" 2>/dev/null; then
    exec 1>&3 2>&4  # our tee was killed: write to where it wrote
    TEE_PID=
  fi
  pack_results || true
  echo
  echo "=== total wall time: $(since "$T0") s (exit $rc)"
  if [ -n "$TEE_PID" ]; then  # let tee write the last lines before the caller collects $OUT
    exec 1>&3 2>&4
    for _ in $(seq 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

STEP_RC=0
run_step() {  # run_step TITLE COMMAND...: the command with its timing; returns its status
  local title=$1 start rc=0
  shift
  echo
  echo "=== $title: $*"
  start=$(now)
  "$@" || rc=$?
  echo "=== $title: $(since "$start") s, exit $rc"
  return "$rc"
}

# ---------------------------------------------------------------- the steps
echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); repo $REPO" \
     "(commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)); FER_WORKDIR=$FER_WORKDIR"
echo "gpu_check: PY=$PY MODELS=$MODELS DEVICE=$DEVICE EXTRA='$EXTRA' BENCH_STEPS=$BENCH_STEPS PACK=$PACK"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

wheels=("$WHEELS"/*.whl)
if [ -e "${wheels[0]}" ]; then
  if run_step "wheels (${#wheels[@]} from $WHEELS)" "$PY" -m pip install -q --no-index --no-deps --no-compile \
       --no-cache-dir --upgrade --target /tmp/gpu_check_site "${wheels[@]}"; then
    export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "warning: the wheels in $WHEELS did not install (built for another Python?): going on without them"
  fi
fi

preflight() {  # the Python, torch and GPU that the steps will use
  "$PY" -c '
import platform, sys, torch
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda available: {cuda}"
      + (f" ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)})" if cuda else ""))
try:
    import albumentations
    print(f"albumentations {albumentations.__version__}")
except ImportError as err:
    print(f"warning: albumentations does not import ({err}): competition.bench times its reference loop with "
          "it and will fail; put its wheels in gpu_data/wheels (see the device README)")
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("error: DEVICE=cuda, but torch sees no GPU here")' "$DEVICE"
}
run_step "python" preflight

CACHE="$FER_WORKDIR/data/fer2013.npz"
if [ ! -e "$PACK" ] && [ -e "$CACHE" ]; then
  echo "=== unpack: no $PACK, but $CACHE is there: using it"
else
  run_step "unpack" "$PY" scripts/pack_data.py unpack --from "$PACK"
fi

# shellcheck disable=SC2086  # EXTRA is a list of flags
run_step "run_all" "$PY" -m competition.run_all --device "$DEVICE" --models "$MODELS" $EXTRA || STEP_RC=$?
pack_results  # what training left comes back even if the bench is cut off
run_step "bench" "$PY" -m competition.bench --device "$DEVICE" --models "$MODELS" --steps "$BENCH_STEPS" \
  || { rc=$?; [ "$STEP_RC" -ne 0 ] || STEP_RC=$rc; }
exit "$STEP_RC"
