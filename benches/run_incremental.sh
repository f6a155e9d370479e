#!/usr/bin/env bash
# Incremental regeneration: a full `generate` run vs the rerun after editing one leaf, in the
# same run folder, on the real 16-leaf taxonomy and on a synthetic one of N leaves
# (benches/make_tree.py, each copy's task description and domain made unique so that no two
# leaves share prompts). Teacher: the deterministic test teacher with a delay per call
# (`test?delay_ms=D`, a stand-in for a remote teacher; its text is not data).
#
#   bash benches/run_incremental.sh [REPEAT] [N]     # REPEAT default 3, N default 500
#
# Each repeat starts from a fresh run folder: full run, edit one skill leaf, rerun. Prints one
# JSON line per run and, per taxonomy, the medians: full wall time and calls, leaves computed,
# one-leaf rerun wall time and calls, and the goal's bound full/computed + 10%.
#
# Environment: LABFLOW (binary; default $CARGO_TARGET_DIR/release/labflow), DELAY_MS (10),
# PIPELINE (full), MAX_IN_FLIGHT (16), SKIP_BUILD=1; TEACHER (default `test?delay_ms=$DELAY_MS`;
# e.g. models/SmolLM2-135M-Instruct.Q4_1.gguf for the embedded one), EXTRA (more `generate`
# arguments, e.g. "--scale 1 --max-tokens 32"), DOCS (default ../shared/data/docs). N=0 runs the
# real taxonomy only.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${1:-3}
N=${2:-500}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-release}
LABFLOW=${LABFLOW:-$CARGO_TARGET_DIR/release/labflow}
DELAY_MS=${DELAY_MS:-10}
PIPELINE=${PIPELINE:-full}
TEACHER=${TEACHER:-test?delay_ms=$DELAY_MS}
DOCS=${DOCS:-../shared/data/docs}
read -r -a EXTRA <<< "${EXTRA:-}"
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-16}
OUT=benches/out/incremental
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet --bin labflow
mkdir -p "$OUT"

# The taxonomies: a copy of the real one, and N synthetic leaves with unique seeds.
rm -rf "$OUT/tax-16" && cp -r ../shared/data/taxonomy "$OUT/tax-16"
TAXONOMIES=("$OUT/tax-16")
[ "$N" = 0 ] || { TAXONOMIES+=("$OUT/tax-$N"); python3 benches/make_tree.py -n "$N" -o "$OUT/tax-$N" >/dev/null; }
[ "$N" = 0 ] || python3 - "$OUT/tax-$N" <<'EOF'
import pathlib, re, sys
for i, q in enumerate(sorted(pathlib.Path(sys.argv[1]).rglob("qna.yaml"))):
    text = q.read_text()
    text = re.sub(r"^task_description:.*$", f"task_description: synthetic task number {i}", text, flags=re.M)
    text = re.sub(r"^domain:.*$", f"domain: synthetic domain {i}", text, flags=re.M)
    q.write_text(text)
EOF

run() { # TAXONOMY FOLDER LABEL
  local t0 t1 json
  t0=$(date +%s.%N)
  json=$("$LABFLOW" generate --taxonomy "$1" --docs "$DOCS" --pipeline "$PIPELINE" \
    --teacher "$TEACHER" --output "$2" --max-in-flight "$MAX_IN_FLIGHT" ${EXTRA[@]+"${EXTRA[@]}"} --json 2>/dev/null)
  t1=$(date +%s.%N)
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(json.dumps({"run": sys.argv[2], "wall_s": round(float(sys.argv[4])-float(sys.argv[3]), 3), "teacher_calls": s["teacher_calls"], "computed": s["computed"], "kept": s["kept"]}))' "$json" "$3" "$t0" "$t1"
}

: > "$OUT/runs.jsonl"
for tax in "${TAXONOMIES[@]}"; do
  name=$(basename "$tax")
  for r in $(seq 1 "$REPEAT"); do
    work="$OUT/work" && rm -rf "$work" && cp -r "$tax" "$work"
    folder="$OUT/run-$name" && rm -rf "$folder"
    run "$work" "$folder" "$name full" | tee -a "$OUT/runs.jsonl"
    leaf=$(find "$work/compositional_skills" -name qna.yaml | sort | head -1)
    sed -i 's/^task_description:.*/task_description: edited for the benchmark/' "$leaf"
    run "$work" "$folder" "$name one-leaf" | tee -a "$OUT/runs.jsonl"
  done
done

python3 - "$OUT/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| taxonomy | full: wall s (median) | calls | leaves computed | one-leaf rerun: wall s | calls | computed | bound full/N + 10% | met |")
print("|---|---|---|---|---|---|---|---|---|")
for name in dict.fromkeys(r["run"].split()[0] for r in runs):
    full = [r for r in runs if r["run"] == f"{name} full"]
    one = [r for r in runs if r["run"] == f"{name} one-leaf"]
    fw = statistics.median(r["wall_s"] for r in full)
    ow = statistics.median(r["wall_s"] for r in one)
    n = full[0]["computed"]
    bound = fw / n * 1.1
    print(f"| {name} | {fw:.2f} | {full[0]['teacher_calls']} | {n} | {ow:.2f} | {one[0]['teacher_calls']} | {one[0]['computed']} | {bound:.2f} | {'yes' if ow <= bound else 'no'} |")
EOF
