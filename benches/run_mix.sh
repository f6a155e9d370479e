#!/usr/bin/env bash
# Mixing bench: `labflow mix` vs instructlab-sdg 0.8.3's mixer over the same synthetic run
# (benches/mix_make_run.py), wall time and peak RSS from /usr/bin/time -v, side by side.
#
#   bash benches/run_mix.sh [ROWS] [REPEAT]     # default 1000000 rows, 3 labflow runs, 1 reference run
#
# Environment:
#   LABFLOW     the labflow binary (default: $CARGO_TARGET_DIR/debug/labflow, the test profile,
#               which builds labflow at opt-level 2 and its dependencies at 1)
#   MIX_VENV    a venv for the peer; created with datasets 3.6.0, pandas 2.2.3 and PyYAML (the
#               mixer fails to concatenate datasets under pandas 3 / datasets >= 4: large_string)
#   WORK        scratch folder (default /tmp/labflow-mix-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
repeat="${2:-3}"
work="${WORK:-/tmp/labflow-mix-bench}"
labflow="${LABFLOW:-${CARGO_TARGET_DIR:-$HOME/.cache/labflow/target}/debug/labflow}"
venv="${MIX_VENV:-$HOME/.cache/labflow/mix-venv}"
if ! "$venv/bin/python" -c 'import datasets, pandas, yaml; assert datasets.__version__ == "3.6.0" and pandas.__version__ == "2.2.3"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "datasets==3.6.0" "pandas==2.2.3" pyyaml
fi
sdg="$work/sdg"
if [ ! -f "$sdg/instructlab/sdg/datamixing.py" ]; then
  mkdir -p "$sdg"
  python3 -m pip download --quiet --no-deps "instructlab-sdg==0.8.3" -d "$sdg"
  (cd "$sdg" && python3 -m zipfile -e instructlab_sdg-0.8.3-*.whl .)
fi
run="$work/run-$rows"
[ -f "$run/manifest.json" ] || "$venv/bin/python" benches/mix_make_run.py "$run" "$rows"

rss() { grep "Maximum resident set size" "$1" | awk '{print int($6 / 1024)}'; }
echo "== labflow mix ($labflow), $repeat runs"
for i in $(seq "$repeat"); do
  rm -rf "$work/labflow-out"
  /usr/bin/time -v "$labflow" mix --run "$run" --output "$work/labflow-out" 2> "$work/time-labflow.txt" | tail -1
  echo "labflow run $i: wall $(grep 'Elapsed (wall' "$work/time-labflow.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-labflow.txt") MiB"
done
rm -rf "$work/labflow-out"
/usr/bin/time -v "$labflow" mix --run "$run" --output "$work/labflow-out" --recipe benches/mix_exact.yaml 2> "$work/time-labflow-exact.txt" | tail -1
echo "labflow, exact dedup only: wall $(grep 'Elapsed (wall' "$work/time-labflow-exact.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-labflow-exact.txt") MiB"

echo "== instructlab-sdg 0.8.3 DataMixer (num_procs 1)"
rm -rf "$work/reference-out" "$work/hf-cache"
HF_DATASETS_CACHE="$work/hf-cache" /usr/bin/time -v "$venv/bin/python" benches/mix_reference.py "$sdg" "$run" "$work/reference-out" 1 2> "$work/time-reference.txt"
echo "reference: wall $(grep 'Elapsed (wall' "$work/time-reference.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-reference.txt") MiB"
