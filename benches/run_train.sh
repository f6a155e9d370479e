#!/usr/bin/env bash
# Trainer throughput: labflow's CPU backend vs PyTorch on the CPU, side by side on this machine —
# full fine-tuning of SmolLM2-135M in f32, one packed row of SEQ_LEN tokens per step, AdamW with
# clipping, THREADS threads each, run one after the other (never at once). Records median
# tokens/s and peak RSS of each; benches/README.md ("train") keeps the numbers.
#
#   bash benches/run_train.sh            # SEQ_LEN=1024 THREADS=2 STEPS=5
#
# Needs: models/SmolLM2-135M-Instruct.Q4_1.gguf (bash models/fetch.sh), and for the peer a python
# with torch + transformers (PYTHON, default /work/venv-model/bin/python) and models/hf/smollm2-f32
# (tests/reference/safetensors_fixture.py). labflow runs as the test-profile binary (labflow at
# opt-level 2, gemm at 3), the build `cargo test` makes.
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ_LEN=${SEQ_LEN:-1024} THREADS=${THREADS:-2} STEPS=${STEPS:-5}
PYTHON=${PYTHON:-/work/venv-model/bin/python}
mkdir -p benches/out
export LABFLOW_BENCH_SEQ_LEN=$SEQ_LEN LABFLOW_BENCH_THREADS=$THREADS LABFLOW_BENCH_STEPS=$STEPS
cargo test --test train_bench -- --ignored --nocapture --test-threads 1 2>benches/out/train_labflow.log | grep -o '{"impl".*}' > benches/out/train_labflow.json
echo "labflow: $(cat benches/out/train_labflow.json)"
"$PYTHON" benches/train_torch.py --threads "$THREADS" --steps "$STEPS" --seq-len "$SEQ_LEN" --json benches/out/train_torch.json > benches/out/train_torch.log 2>&1
echo "torch:   $(cat benches/out/train_torch.json)"
python3 - <<'PY'
import json
l = json.load(open("benches/out/train_labflow.json"))
t = json.load(open("benches/out/train_torch.json"))
tl, tt = l["median_tokens_per_s"], t.get("median_tokens_per_s")
print(f"tokens/s: labflow {tl:.1f}, torch {tt:.1f} -> {tl / tt:.2f}x;  peak RSS: labflow {l['peak_rss_mib']:.0f} MiB, torch {t['peak_rss_mib']:.0f} MiB -> {l['peak_rss_mib'] / t['peak_rss_mib']:.2f}x")
PY
