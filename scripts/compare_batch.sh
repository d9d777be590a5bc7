#!/usr/bin/env bash
# Does accuracy hold at a bigger batch? bn_cnn, fold 0, the strong recipe for EPOCHS epochs, tensor augmentation,
# once per batch size, each in its own work folder under ROOT (lr, warm-up and EMA scaled by competition.recipes).
#   bash scripts/compare_batch.sh ROOT ZIP [EPOCHS=10] [BATCHES="512 128"] [DEVICE=cpu]
# Prints the fold-validation accuracy (with and without TTA) of each batch size. On 2 CPU cores: ~10 min a batch.
set -euo pipefail
ROOT=$1 ZIP=$2 EPOCHS=${3:-10} BATCHES=${4:-"512 128"} DEVICE=${5:-cpu}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
export FER_WORKDIR=$ROOT/shared
[ -f "$FER_WORKDIR/data/fer2013.npz" ] || $PY -m competition.download --from "$ZIP"
[ -f "$FER_WORKDIR/folds/folds.csv" ] || $PY -m competition.folds --k 5 --seed 42
for bs in $BATCHES; do
  run=$ROOT/bs$bs
  mkdir -p "$run/data" "$run/folds"
  ln -sf "$FER_WORKDIR/data/fer2013.npz" "$run/data/fer2013.npz"
  cp -n "$FER_WORKDIR/folds/folds.csv" "$run/folds/folds.csv"
  FER_WORKDIR=$run $PY -m competition.train_folds --model bn_cnn --folds 0 --epochs "$EPOCHS" --aug tensor \
    --set batch_size="$bs" --device "$DEVICE" > "$run/train.log" 2>&1
  echo "batch $bs: $(grep "best epoch" "$run/train.log")"
done
