#!/usr/bin/env bash
# Recipe settings compared by fold-validation (OOF) accuracy: bn_cnn, fold 0, the strong recipe for EPOCHS
# epochs with tensor augmentation, once per named setting (a list of `--set key=value` overrides), each in
# its own work folder ROOT/<setting> that shares SRC's data and folds (symlinks). Then one table: setting,
# overrides, fold-0 validation accuracy with TTA (done.json val_acc) and without (val_acc_plain), clean
# accuracy on a sample of the training rows (train_acc: below another setting's = it fits less), best epoch,
# training seconds. Only Training rows are read for the choice; test labels are never touched.
#
#   bash scripts/compare_recipes.sh                         # every setting, 10 epochs, CPU, 1 thread
#   EPOCHS=1 ROOT=/tmp/try SETTINGS="strong sgd" bash scripts/compare_recipes.sh   # a quick try
#   EXTRA="--device cuda" EPOCHS=40 bash scripts/compare_recipes.sh                # on a GPU
#
# Environment (all optional):
#   SRC       work folder holding data/fer2013.npz and folds/folds.csv (default: $FER_WORKDIR, else the
#             repository itself; make them with ./run.sh download and ./run.sh folds)
#   ROOT      where each setting's work folder goes (default: $SRC/runs/compare_recipes)
#   EPOCHS    epochs per setting (default 10)
#   SETTINGS  names of the settings to run, in order (default: all below, most informative first)
#   THREADS   torch threads on CPU (default 1)
#   EXTRA     more arguments for competition.train_folds, e.g. "--device cuda" or "--seeds 1"
#   PY        the Python to use (default: the repository's .venv)
# Resumable: a finished setting (its done.json) is skipped, and an interrupted one resumes from its last
# checkpoint (competition.train_folds). A changed EPOCHS or EXTRA needs a new ROOT: train_folds refuses to
# resume a fold with other settings. Each setting's log: ROOT/<setting>/train.log. Settings run one at a time.
# On 2 CPU cores with 1 thread, one bn_cnn epoch takes about 1.5-2.5 minutes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
SRC=${SRC:-${FER_WORKDIR:-$REPO}}
ROOT=${ROOT:-$SRC/runs/compare_recipes}
EPOCHS=${EPOCHS:-10}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-}
MODEL=bn_cnn
FOLD=0

# name -> overrides of the strong recipe (sgd: lr 0.01 at batch 128; scaled()'s factor is 1 at batch 128)
declare -A OVERRIDES=(
  [strong]=""
  [mixup]="mixup=0.2"
  [sgd]="opt=sgd lr=0.01 weight_decay=5e-4"
  [cutmix]="cutmix=1.0"
  [no_smoothing]="label_smoothing=0"
  [no_erase]="erase=0"
)
SETTINGS=${SETTINGS:-"strong mixup sgd cutmix no_smoothing no_erase"}

for name in $SETTINGS; do
  [[ -v "OVERRIDES[$name]" ]] || { echo "unknown setting '$name'; known: ${!OVERRIDES[*]}" >&2; exit 2; }
done
for f in data/fer2013.npz folds/folds.csv; do
  [ -f "$SRC/$f" ] || { echo "$SRC/$f is missing: set SRC to a work folder with data and folds" >&2; exit 2; }
done

done_json() { echo "$ROOT/$1/folds/$MODEL/fold$FOLD/done.json"; }

failed=0
for name in $SETTINGS; do
  run=$ROOT/$name
  if [ -f "$(done_json "$name")" ]; then
    echo "$name: finished earlier, skipped"
    continue
  fi
  mkdir -p "$run/data" "$run/folds"
  ln -sfn "$(cd "$SRC" && pwd)/data/fer2013.npz" "$run/data/fer2013.npz"
  ln -sfn "$(cd "$SRC" && pwd)/folds/folds.csv" "$run/folds/folds.csv"
  sets=()
  for kv in ${OVERRIDES[$name]}; do sets+=(--set "$kv"); done
  echo "$name: training $MODEL fold $FOLD for $EPOCHS epochs (${OVERRIDES[$name]:-no overrides}), log $run/train.log"
  # shellcheck disable=SC2086  # EXTRA is a list of words on purpose
  if ! FER_WORKDIR=$run "$PY" -m competition.train_folds --model "$MODEL" --folds "$FOLD" --epochs "$EPOCHS" \
      --aug tensor --threads "$THREADS" "${sets[@]}" $EXTRA >> "$run/train.log" 2>&1; then
    echo "$name: training failed; the end of $run/train.log:" >&2
    tail -n 5 "$run/train.log" >&2
    failed=1
  fi
done

# The table, from each setting's done.json (a setting without one is listed as not finished).
echo
printf '%-13s %-36s %8s %9s %11s %5s %8s\n' setting overrides val_tta val_plain train_clean best seconds
rows=()  # name, overrides, its work folder if it finished: one Python for the table (each start imports torch)
for name in $SETTINGS; do
  file=$(done_json "$name")
  rows+=("$name" "${OVERRIDES[$name]:-(none)}" "$([ -f "$file" ] && echo "$ROOT/$name" || true)")
done
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$MODEL" "$FOLD" "${rows[@]}" <<'EOF'
import os
import sys
from competition import artifacts
model, fold, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for name, overrides, workdir in zip(rows[::3], rows[1::3], rows[2::3]):
    if not workdir:
        print(f"{name:<13s} {overrides:<36s} not finished")
        continue
    os.environ["FER_WORKDIR"] = workdir  # artifacts reads it at each call (competition.paths)
    d = artifacts.read_done(artifacts.FoldFiles(model, fold))
    print(f"{name:<13s} {overrides:<36s} {d.val_acc:8.4f} {d.val_acc_plain:9.4f} "
          f"{d.train_acc:11.4f} {d.best_epoch:5d} {d.seconds:8.0f}")
EOF
exit $failed
