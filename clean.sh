#!/usr/bin/env bash
# Remove .venv, caches and the contents of outputs/ (keeps outputs/.gitkeep).
#   bash clean.sh [--yes]
set -euo pipefail
cd "$(dirname "$0")"
yes=0
for arg in "$@"; do
  case "$arg" in
    --yes|-y) yes=1 ;;
    -h|--help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "clean.sh: unknown argument '$arg' (use --yes)" >&2; exit 2 ;;
  esac
done
echo "Will remove: .venv/, __pycache__/, .pytest_cache/, *.egg-info/, build/, dist/, outputs/* (keeps .gitkeep)"
if [ "$yes" -ne 1 ]; then
  [ -t 0 ] || { echo "clean.sh: no terminal to confirm on; re-run with --yes" >&2; exit 1; }
  read -r -p "Proceed? [y/N] " ans
  case "$ans" in y|Y|yes) ;; *) echo "aborted"; exit 1 ;; esac
fi
rm -rf .venv .pytest_cache build dist src/*.egg-info .benchmarks
find . -name __pycache__ -type d -prune -exec rm -rf {} +
find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} + 2>/dev/null || true
echo "clean."
