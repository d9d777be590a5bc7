#!/usr/bin/env bash
# The whole GPU check in one command, for the lent GPU machine, from the repo root:
#   bash scripts/gpu_check.sh                  # fits GPU_CHECK_LIMIT_S (540 s) and always brings results back
#   FULL=1 bash scripts/gpu_check.sh           # the full job: every fold (cut at the same limit if it runs over)
# Before (here, where the data is):  ./run.sh download --from PATH && python3 scripts/pack_data.py pack
# and, for the bench's reference column, cp312 wheels of albumentations 2.0.8, albucore, pydantic, pydantic-core,
# annotated-types, typing-inspection, typing-extensions, stringzilla, simsimd in gpu_data/wheels (7.6 MiB;
# `pip download --no-deps --only-binary=:all: --python-version 3.12 ...` as the device README shows);
# then the device tool's run with carry ["gpu_data"], timeout_s 600 and the command above. Steps, each timed:
#   a. stop leftover training processes of an earlier call on this machine (same FER_WORKDIR)
#   b. unpack the dataset cache from $PACK (scripts/pack_data.py unpack; skipped when it holds the same bytes)
#   c. the bench, first and short: BENCH_STEPS batches per model, cut at BENCH_LIMIT_S (the wheels only here)
#   d. run_all --stop-at: training ends RESERVE_S before the limit (running folds keep the epochs they have,
#      jobs not started are skipped and listed), then the ensemble and report over what finished
#   e. if run_all was cut or failed: the ensemble and report over what finished, if time is left
# The whole call ends by GPU_CHECK_LIMIT_S after it started: every step runs under `timeout`, and training
# processes are children of run_all in this script's session (no torchrun: its workers outlive a session kill).
# Settings (environment): GPU_CHECK_LIMIT_S (540: the device's 600 s per command less a margin), FULL (0: fold 0
# of each model; 1: all folds), FOLDS (overrides FULL), PY (python3), MODELS (baseline_cnn,bn_cnn,resnet_cbam,
# resnet_cbam48), DEVICE (cuda), EXTRA (more run_all flags, empty), BENCH_STEPS (10), BENCH_LIMIT_S (90; 0: no bench),
# RESERVE_S (60: kept after training for the ensemble, report and packing), FER_WORKDIR (the repo),
# PACK (gpu_data/fer2013.npz.xz), WHEELS (gpu_data/wheels: *.whl there are installed with pip --no-index into
# /tmp/gpu_check_site, on the bench's PYTHONPATH only).
# Default size, from the H200 figures (4 processes finished 9 of 20 jobs of the 40-epoch strong recipe in 400 s;
# resnet_cbam48 ~37 PFLOP for 5 folds): fold 0 of the four models is ~1/5 of the job, about 2-3 min on 4
# processes, inside the ~6.5 min training window with a margin; FULL=1 (~10-13 min) is cut at the window.
# With $OUT set: the log is teed to $OUT/gpu_check.log (unless the caller already writes that file, e.g. with
# `2>&1 | tee $OUT/gpu_check.log`), and $OUT/gpu_check_results.tar.gz gets the fold files (done.json, log.csv,
# config.json, oof.npz, test.npz; refits too), folds.csv, submissions/{leaderboard,submission}.csv and reports/<name>/,
# written (atomically) whenever a fold finishes during training and after every step, also when a step fails or
# the check is killed. Were it over 16 MiB, the logits go to $OUT/gpu_check_logits_<model>.tar.gz instead.
# The exit status is the first failing step's (124: cut by its time limit).
set -euo pipefail
shopt -s extglob
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

PY=${PY:-python3}
MODELS=${MODELS:-baseline_cnn,bn_cnn,resnet_cbam,resnet_cbam48}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
FULL=${FULL:-0}
FOLDS=${FOLDS:-$([ "$FULL" = 1 ] && echo all || echo 0)}
GPU_CHECK_LIMIT_S=${GPU_CHECK_LIMIT_S:-540}
RESERVE_S=${RESERVE_S:-60}
BENCH_STEPS=${BENCH_STEPS:-10}
BENCH_LIMIT_S=${BENCH_LIMIT_S:-90}
PACK=${PACK:-gpu_data/fer2013.npz.xz}
WHEELS=${WHEELS:-gpu_data/wheels}
OUT=${OUT:-}
export FER_WORKDIR=${FER_WORKDIR:-$REPO}
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
LIMIT=$((16 * 1024 * 1024 - 64 * 1024))  # what one file back from $OUT may weigh, less a margin
START=$(date +%s)
END=$((START + GPU_CHECK_LIMIT_S))  # the whole call ends by then
left() { echo $((END - $(date +%s))); }

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
    pack() { tar -czf "$1.part" "${@:2}" && mv -f "$1.part" "$1"; }  # a kill mid-write keeps the last tarball
    pack "$tarball" "${small[@]}" "${logits[@]}"
    rm -f "$OUT"/gpu_check_logits_*.tar.gz
    if [ "$(stat -c %s "$tarball")" -gt "$LIMIT" ] && [ ${#logits[@]} -gt 0 ]; then
      [ ${#small[@]} -gt 0 ] && pack "$tarball" "${small[@]}" || rm -f "$tarball"
      for dir in folds/*/; do
        model=$(basename "$dir")
        files=("$dir"fold*/oof.npz "$dir"{fold*,refit}/test.npz)
        [ ${#files[@]} -gt 0 ] && pack "$OUT/gpu_check_logits_$model.tar.gz" "${files[@]}"
      done
    fi
    for f in "$OUT"/gpu_check_results.tar.gz "$OUT"/gpu_check_logits_*.tar.gz; do
      size=$(stat -c %s "$f")
      echo "results: $f $(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }')" \
           "($(tar -tzf "$f" | wc -l) files)$([ "$size" -gt "$LIMIT" ] && echo ': OVER 16 MiB, will not come back')"
    done
  )
}

done_files() { { ls -l --time-style=+%s "$FER_WORKDIR"/folds/*/*/done.json 2>/dev/null || true; } | md5sum; }
WATCH_PID=
watch_results() {  # in the background while training: pack again whenever a fold finishes
  local seen now
  seen=$(done_files)
  while sleep 3; do
    now=$(done_files)
    if [ "$now" != "$seen" ]; then seen=$now; pack_results; fi
  done
}
stop_watch() {
  [ -n "$WATCH_PID" ] || return 0
  kill "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" 2>/dev/null || true
  WATCH_PID=
}

finish() {
  local rc=$?
  trap - EXIT
  set +e  # from here on, a failed write (a dead tee) must not change the exit status
  stop_watch
  if [ -n "$TEE_PID" ] && ! kill -0 "$TEE_PID" 2>/dev/null; then
    exec 1>&3 2>&4  # our tee was killed: write to where it wrote
    TEE_PID=
  fi
  pack_results || true
  echo
  echo "=== total wall time: $(since "$T0") s of GPU_CHECK_LIMIT_S=$GPU_CHECK_LIMIT_S (exit $rc)"
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
run_step() {  # run_step TITLE SECONDS COMMAND...: the command, cut after SECONDS (TERM, then KILL 15 s on; run_all
  # passes the TERM to its training processes, and they get SIGTERM from the kernel if run_all dies by KILL)
  local title=$1 limit=$2 start rc=0
  shift 2
  echo
  if [ "$limit" -lt 5 ]; then
    echo "=== $title: skipped, its time limit is ${limit} s"
    return 124
  fi
  echo "=== $title (at most $limit s): $*"
  start=$(now)
  if declare -F "$1" >/dev/null; then "$@" || rc=$?  # a function of this script (short): no timeout
  else timeout --foreground --kill-after=15 "$limit" "$@" || rc=$?; fi  # in our process group: Ctrl-C reaches it
  echo "=== $title: $(since "$start") s, exit $rc$([ "$rc" = 124 ] && echo ' (cut at its time limit)')"
  return "$rc"
}
failed() { [ "$STEP_RC" -ne 0 ] || STEP_RC=$1; }

sid_of() { cut -d')' -f2- "/proc/$1/stat" 2>/dev/null | awk '{ print $4 }'; }
stop_leftovers() {  # training processes (and forkservers: competition.graph) of an earlier call with this FER_WORKDIR that outlived it
  local dir pid mine found=()
  mine=$(sid_of $$)
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ "$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null)" == *competition.@(train_folds|run_all|runner|graph)* ]] || continue
    [ "$(sid_of "$pid")" != "$mine" ] || continue
    tr '\0' '\n' < "$dir/environ" 2>/dev/null | grep -qx "FER_WORKDIR=$FER_WORKDIR" && found+=("$pid")
  done
  [ ${#found[@]} -gt 0 ] || return 0
  echo "gpu_check: stopping ${#found[@]} leftover training process(es) of an earlier call: ${found[*]}"
  kill -TERM "${found[@]}" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "${found[@]}" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "${found[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------- the steps
echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); repo $REPO" \
     "(commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)); FER_WORKDIR=$FER_WORKDIR"
echo "gpu_check: PY=$PY MODELS=$MODELS DEVICE=$DEVICE EXTRA='$EXTRA' BENCH_STEPS=$BENCH_STEPS PACK=$PACK"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

echo "gpu_check: limit ${GPU_CHECK_LIMIT_S} s (ends by $(date -u -d "@$END" +%H:%M:%SZ));" \
     "FOLDS=$FOLDS RESERVE_S=$RESERVE_S BENCH_LIMIT_S=$BENCH_LIMIT_S"
stop_leftovers

BENCH_PATH=${PYTHONPATH:-}  # the carried wheels go on the bench's path only: their typing-extensions
wheels=("$WHEELS"/*.whl)     # would shadow the image's for torch and timm everywhere else
if [ -e "${wheels[0]}" ]; then
  if run_step "wheels (${#wheels[@]} from $WHEELS)" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
       --no-cache-dir --upgrade --target /tmp/gpu_check_site "${wheels[@]}"; then
    BENCH_PATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "warning: the wheels in $WHEELS did not install (built for another Python?): going on without them"
  fi
fi

preflight() {  # the Python, torch and GPU that the steps will use
  "$PY" -c '
import platform, sys, torch
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda available: {cuda}"
      + (f" ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, compute capability "
         f"{torch.cuda.get_device_capability(0)})" if cuda else ""))
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("error: DEVICE=cuda, but torch sees no GPU here")
try:  # on the bench path; any failure (pydantic raises SystemError on a core mismatch) is reported, not fatal
    import albumentations
    print(f"albumentations {albumentations.__version__} (bench only)")
except Exception as err:
    print(f"note: albumentations does not import ({type(err).__name__}: {err}): the bench reference loop trains "
          "without augmentation")' "$DEVICE"
}
PYTHONPATH=$BENCH_PATH run_step "python" 60 preflight || { failed $?; exit "$STEP_RC"; }

CACHE="$FER_WORKDIR/data/fer2013.npz"
if [ ! -e "$PACK" ] && [ -e "$CACHE" ]; then
  echo "=== unpack: no $PACK, but $CACHE is there: using it"
else
  run_step "unpack" "$(left)" "$PY" scripts/pack_data.py unpack --from "$PACK" || { failed $?; exit "$STEP_RC"; }
fi

bench_limit=$(( $(left) - RESERVE_S - 60 < BENCH_LIMIT_S ? $(left) - RESERVE_S - 60 : BENCH_LIMIT_S ))
if [ "$BENCH_LIMIT_S" -gt 0 ]; then
  PYTHONPATH=$BENCH_PATH run_step "bench" "$bench_limit" "$PY" -m competition.bench --device "$DEVICE" \
    --models "$MODELS" --steps "$BENCH_STEPS" || failed $?
fi

STOP_AT=$((END - RESERVE_S))  # training's end; the ensemble, report and packing get RESERVE_S
if [ -n "$OUT" ]; then watch_results & WATCH_PID=$!; fi
# shellcheck disable=SC2086  # EXTRA is a list of flags
run_step "run_all" "$(( $(left) - 15 ))" "$PY" -m competition.run_all --device "$DEVICE" --models "$MODELS" \
  --folds "$FOLDS" --stop-at "$STOP_AT" --checkpoint-every 1e9 $EXTRA || { rc=$?; failed $rc; }
stop_watch
pack_results
if [ "${rc:-0}" -ne 0 ]; then  # cut or failed before its ensemble: one over what finished, if time is left
  finished=$(for m in ${MODELS//,/ }; do  # members with a finished fold (bash only: no start-up time)
               if compgen -G "$FER_WORKDIR/folds/$m/fold*/done.json" >/dev/null; then echo "$m"; fi
             done | paste -sd,)
  if [ -n "$finished" ]; then
    run_step "ensemble (what finished)" "$(( $(left) - 10 ))" "$PY" -m competition.ensemble --members "$finished" \
      --allow-missing && run_step "report (what finished)" "$(( $(left) - 10 ))" "$PY" -m competition.report \
      --out "$FER_WORKDIR/reports/gpu_check" --members "$finished" --allow-missing || failed $?
  fi
fi
exit "$STEP_RC"
