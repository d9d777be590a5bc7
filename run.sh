#!/usr/bin/env bash
# fer-harness entry point: creates .venv from requirements.txt on first use, then runs one step.
#   ./run.sh download [--from PATH] [--force]   competition files -> data/fer2013.npz
#   ./run.sh folds [--k 5] [--seed 42]          folds/folds.csv
#   ./run.sh train --model bn_cnn [...]         per-fold training (python -m competition.train_folds)
#   ./run.sh ensemble [...]                     submissions/submission.csv + local leaderboard
#   ./run.sh submit [FILE] -m MESSAGE           validate, then kaggle competitions submit
#   ./run.sh report [...]                       reports/<name>/report.md
#   ./run.sh bench [...]                        images/s: harness vs a plain PyTorch loop
#   ./run.sh all [--quick] [--from PATH]        download, folds, three models, ensemble, report
#   ./run.sh test [pytest args]                 the test suite, a worker per core (installs requirements-ray.txt for Ray)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
if [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ]; then
  echo "setting up $VENV from requirements.txt (first run only; torch comes from this machine's disk)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
  touch "$VENV/.installed"
fi
PY="$VENV/bin/python"

cmd="${1:-help}"
shift || true
case "$cmd" in
  download) exec "$PY" -m competition.download "$@" ;;
  folds)    exec "$PY" -m competition.folds "$@" ;;
  train)    exec "$PY" -m competition.train_folds "$@" ;;
  ensemble) exec "$PY" -m competition.ensemble "$@" ;;
  submit)   exec "$PY" -m competition.submit "$@" ;;
  report)   exec "$PY" -m competition.report "$@" ;;
  bench)    exec "$PY" -m competition.bench "$@" ;;
  all)      exec "$PY" -m competition.run_all "$@" ;;
  test)  # Ray is optional for users, but the suite tests the Ray runner: installed here (seconds, from PyPI)
    if [ ! -f "$VENV/.ray-installed" ] || [ requirements-ray.txt -nt "$VENV/.ray-installed" ]; then
      if "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-ray.txt; then
        touch "$VENV/.ray-installed"
      else
        echo "warning: requirements-ray.txt did not install: the Ray runner's tests will skip" >&2
      fi
    fi
    # one pytest worker per core (pytest-xdist); a -n of yours comes later and wins: ./run.sh test -n 0
    exec "$PY" -m pytest -q -n auto "$@" tests ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; [ "$cmd" = help ] || exit 2 ;;
esac
