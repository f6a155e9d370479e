#!/usr/bin/env bash
# Generation beside the reference: the same leaf, the same pipeline files, the same teacher server,
# in one run. (a) instructlab-sdg 0.8.3's `full` pipeline (benches/sdg_reference.py) against
# (b) `labflow generate --pipeline ilab:DIR` over the same copy of those files.
#
#   bash benches/run_sdg.sh [REPEAT] [CASE...]     # REPEAT default 3
#
# A CASE is one leaf id or several joined by commas, run in one invocation of each tool (the
# reference one leaf after another, as its generate_taxonomy does; labflow all at once).
# Default: the synonyms skill.
#
# One `labflow serve` (release build, the embedded SmolLM2 model, no response cache, access log
# on) is started once and shared by both sides; the runs alternate reference, labflow, reference,
# … so slow drift in the machine's load hits both. Every labflow run writes to a fresh output
# folder (its response cache starts empty). Prints one JSON line per run and a table of medians;
# paste the table into benches/README.md.
#
# Environment: LABFLOW (binary; default $CARGO_TARGET_DIR/release/labflow), PY_SDG (the venv's
# python; made at /work/venv-sdg if missing), PORT (8321), MAX_TOKENS (256), MAX_IN_FLIGHT (16),
# TAXONOMY (../shared/data/taxonomy), SKIP_BUILD=1, SIDES (default "reference labflow"; add
# reference-unbatched for the reference as it runs against a server it treats as non-batching,
# e.g. InstructLab's default llama-cpp-python: one prompt per request, n requests in a row).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${1:-3}
shift || true
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(compositional_skills/linguistics/synonyms)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-release}
LABFLOW=${LABFLOW:-$CARGO_TARGET_DIR/release/labflow}
VENV=${VENV:-/work/venv-sdg}
PY_SDG=${PY_SDG:-$VENV/bin/python}
PORT=${PORT:-8321}
MAX_TOKENS=${MAX_TOKENS:-256}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-16}
TAXONOMY=${TAXONOMY:-../shared/data/taxonomy}
MODEL_FILE=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL=SmolLM2-135M-Instruct.Q4_1
OUT=benches/out/sdg
CAPPED=benches/out/ilab-full-capped
SIDES=${SIDES:-reference labflow}

[ -s "$MODEL_FILE" ] || bash models/fetch.sh
if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 19 cargo build --release --bin labflow >&2
fi
if [ ! -x "$PY_SDG" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps instructlab-sdg==0.8.3
  # What importing the pipeline, the blocks and the taxonomy reader needs (no docling, no torch).
  "$VENV/bin/pip" install -q datasets "openai>=1.13.3,<2" jinja2 pyyaml tenacity httpx xdg-base-dirs \
    instructlab-schema GitPython yamllint gguf
fi
export PATH="$(dirname "$PY_SDG"):$PATH" # the taxonomy reader runs the yamllint command

mkdir -p "$OUT"
"$PY_SDG" benches/sdg_reference.py capped --out "$CAPPED" --max-tokens "$MAX_TOKENS" --chat-template-from "$MODEL_FILE" >&2
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$OUT/access-$stamp.jsonl"
results="$OUT/results-$stamp.jsonl"
"$LABFLOW" serve --model "$MODEL_FILE" --port "$PORT" --served-model-name "$MODEL" --access-log "$log" 2>"$OUT/serve-$stamp.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null

now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }

# Append one result line: side, leaf, rep, process wall, the tool's own JSON, the busy figures.
record() {
  local side=$1 leaf=$2 rep=$3 t0=$4 t1=$5 tool_json=$6
  local busy
  busy=$(python3 benches/busy.py "$log" "$t0" "$t1")
  python3 - "$side" "$leaf" "$rep" "$t0" "$t1" "$tool_json" "$busy" <<'PY' | tee -a "$results"
import json, sys
side, leaf, rep, t0, t1, tool, busy = sys.argv[1:]
tool = json.loads(tool) if tool.strip() else {}
load = open("/proc/loadavg").read().split()[:3]
print(json.dumps({"side": side, "leaf": leaf, "rep": int(rep), "wall_seconds": round(float(t1) - float(t0), 3),
                  "load_after": load, "tool": tool, "server": json.loads(busy)}))
PY
}

echo "load before: $(uptime)" >&2
case_no=0
for leaf in "${CASES[@]}"; do
  leaf_args=()
  IFS=, read -ra ids <<<"$leaf"
  for id in "${ids[@]}"; do leaf_args+=(--leaf "$id"); done
  case_no=$((case_no + 1))
  for rep in $(seq 1 "$REPEAT"); do
    for side in $SIDES; do
      case $side in
      reference | reference-unbatched)
        extra=()
        [ "$side" = reference-unbatched ] && extra=(--unbatched)
        t0=$(now)
        tool=$("$PY_SDG" benches/sdg_reference.py run --pipeline-dir "$CAPPED/pipelines/full" --taxonomy "$TAXONOMY" \
          "${leaf_args[@]}" --base-url "http://127.0.0.1:$PORT/v1" --model "$MODEL" "${extra[@]}" \
          --output "$OUT/$side-$stamp-$case_no-$rep" 2>"$OUT/$side-$stamp-$case_no-$rep.log" | tail -n 1)
        t1=$(now)
        ;;
      labflow)
        run_dir="$OUT/labflow-$stamp-$case_no-$rep"
        rm -rf "$run_dir"
        t0=$(now)
        tool=$("$LABFLOW" generate --pipeline "ilab:$CAPPED/pipelines/full" --teacher "http://127.0.0.1:$PORT/v1#$MODEL" \
          --taxonomy "$TAXONOMY" "${leaf_args[@]}" --output "$run_dir" --json --max-in-flight "$MAX_IN_FLIGHT" \
          2>"$OUT/labflow-$stamp-$case_no-$rep.log")
        t1=$(now)
        ;;
      *)
        echo "unknown side $side" >&2
        exit 2
        ;;
      esac
      record "$side" "$leaf" "$rep" "$t0" "$t1" "$tool"
    done
  done
done
echo "load after: $(uptime)" >&2

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def rows_out(r):
    return r["tool"].get("rows")
print(f"results: {sys.argv[1]}")
print("| leaves | side | runs | wall s: median (each) | teacher requests | sequences | completion tokens | teacher busy | mean sequences open | rows out |")
print("|---|---|---|---|---|---|---|---|---|---|")
for leaf in dict.fromkeys(r["leaf"] for r in rows):
    walls = {}
    for side in ("reference", "reference-unbatched", "labflow"):
        rs = [r for r in rows if r["leaf"] == leaf and r["side"] == side]
        if not rs:
            continue
        walls[side] = med([r["wall_seconds"] for r in rs])
        s = lambda k: med([r["server"][k] for r in rs])
        each = ", ".join("%.1f" % r["wall_seconds"] for r in rs)
        print(f"| {leaf} | {side} | {len(rs)} | {walls[side]:.1f} ({each}) | "
              f"{s('requests'):.0f} | {s('sequences'):.0f} | {s('completion_tokens'):.0f} | {100 * s('busy_fraction'):.0f}% | "
              f"{s('mean_sequences_open'):.1f} | {[rows_out(r) for r in rs]} |")
    for ref in ("reference", "reference-unbatched"):
        if ref in walls and "labflow" in walls:
            print(f"| {leaf} | **ratio** {ref} / labflow wall | | **{walls[ref] / walls['labflow']:.2f}×** | | | | | | |")
PY
