#!/usr/bin/env bash
# Re-mix bench: `labflow mix` into a folder that holds the previous mix (src/mix/parts.rs) over
# the mixing bench's synthetic run (benches/run_mix.sh makes it), beside a fresh mix in the same
# run: unchanged, then after one skill leaf's rows change (its Parquet file rewritten with one
# response edited); the files are checked equal to a fresh mix's.
#
#   bash benches/run_remix.sh [ROWS] [REPEAT]     # default 1000000 rows, 3 runs of each
#
# Environment: LABFLOW, MIX_VENV and WORK as for benches/run_mix.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
repeat="${2:-3}"
work="${WORK:-/tmp/labflow-mix-bench}"
labflow="${LABFLOW:-${CARGO_TARGET_DIR:-$HOME/.cache/labflow/target}/debug/labflow}"
venv="${MIX_VENV:-$HOME/.cache/labflow/mix-venv}"
run="$work/run-$rows"
[ -f "$run/manifest.json" ] || "$venv/bin/python" benches/mix_make_run.py "$run" "$rows"
rss() { grep "Maximum resident set size" "$1" | awk '{print int($6 / 1024)}'; }

edit() {
  "$venv/bin/python" - "$run/generated/compositional_skills/bench/leaf0000/bench.parquet" "$1" <<'PY'
import sys
import pyarrow.parquet as pq
path, tag = sys.argv[1], sys.argv[2]
t = pq.read_table(path).to_pydict()
t["response"][0] = t["response"][0].split(" [edit")[0] + f" [edit {tag}]"
import pyarrow as pa
pq.write_table(pa.table(t), path)
PY
}
echo "== labflow mix ($labflow): fresh, then re-mixes into the same folder, $repeat runs each"
for i in $(seq "$repeat"); do
  rm -rf "$work/labflow-out"
  /usr/bin/time -v "$labflow" mix --run "$run" --output "$work/labflow-out" 2> "$work/time-remix.txt" | tail -1
  echo "fresh mix $i: wall $(grep 'Elapsed (wall' "$work/time-remix.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-remix.txt") MiB"
done
for i in $(seq "$repeat"); do
  /usr/bin/time -v "$labflow" mix --run "$run" --output "$work/labflow-out" 2> "$work/time-remix.txt" | tail -1
  echo "unchanged re-mix $i: wall $(grep 'Elapsed (wall' "$work/time-remix.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-remix.txt") MiB"
done
for i in $(seq "$repeat"); do
  edit "$i"
  /usr/bin/time -v "$labflow" mix --run "$run" --output "$work/labflow-out" 2> "$work/time-remix.txt" | tail -1
  echo "one-leaf re-mix $i: wall $(grep 'Elapsed (wall' "$work/time-remix.txt" | awk '{print $8}'), peak RSS $(rss "$work/time-remix.txt") MiB"
done
rm -rf "$work/labflow-fresh"
"$labflow" mix --run "$run" --output "$work/labflow-fresh" --fresh > /dev/null
for f in knowledge_train_msgs skills_train_msgs; do
  cmp "$work/labflow-out/$f.jsonl" "$work/labflow-fresh/$f.jsonl" && cmp "$work/labflow-out/$f.parquet" "$work/labflow-fresh/$f.parquet" && echo "$f: re-mix == fresh mix"
done
rm -rf "$work/labflow-fresh"
echo "(leaf0000 of $run stays edited; delete $run to make it again)"
