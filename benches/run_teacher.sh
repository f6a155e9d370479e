#!/usr/bin/env bash
# The embedded teacher's speed beside llama.cpp, same GGUF, same machine, same run.
#
#   bash benches/run_teacher.sh [REPEAT]     # needs /work/venv-llama (tests/reference/llama_cpp_fixtures.py)
#
# Prints one JSON line per (tool, bench, threads) and a table of medians and ratios; paste the
# table into benches/README.md. Threads 1 and 2 (labflow: --threads; llama.cpp: n_threads).
#
# BENCH_FLAGS: extra cargo flags for the labflow side. The default builds the bench profile
# (release: a cold build of every dependency, ~45 min on 2 cores). To reuse a test build's
# dependencies instead, with labflow itself optimised as in release:
#   BENCH_FLAGS="--profile dev --config profile.dev.package.labflow.opt-level=3 \
#     --config profile.dev.package.labflow.debug-assertions=false \
#     --config profile.dev.package.labflow.overflow-checks=false" bash benches/run_teacher.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY_LLAMA=${PY_LLAMA:-/work/venv-llama/bin/python}
REPEAT=${1:-3}
read -r -a FLAGS <<< "${BENCH_FLAGS:-}"
cargo bench "${FLAGS[@]}" --bench teacher --no-run >/dev/null 2>&1
echo "load before: $(uptime)" >&2
out=$(mktemp)
{
  for th in 1 2; do
    cargo bench -q "${FLAGS[@]}" --bench teacher -- --threads "$th" --repeat "$REPEAT"
    "$PY_LLAMA" benches/llama_cpp_teacher.py --threads "$th" --repeat "$REPEAT" 2>/dev/null
  done
} | grep --line-buffered "^{" | tee "$out"
echo "load after: $(uptime)" >&2
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = {(r["tool"], r["bench"], r["threads"]): r["tokens_per_second"] for r in rows}
print("| bench | threads | labflow tok/s | llama.cpp tok/s | ratio |")
print("|---|---|---|---|---|")
for th in (1, 2):
    for lf, ll in (("prompt", "prompt"), ("decode_1", "decode_1"), ("decode_16", "decode_16"), ("teacher_16", "decode_16"), ("decode_1_f32", "decode_1")):
        a, b = get.get(("labflow", lf, th)), get.get(("llama.cpp", ll, th))
        if a and b:
            print(f"| {lf} | {th} | {a:.1f} | {b:.1f} ({ll}) | {a / b:.2f}x |")
PY
