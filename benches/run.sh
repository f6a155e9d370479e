#!/usr/bin/env bash
# Validate throughput, labflow beside the reference validator, same machine, same run.
#
#   bash benches/run.sh            # needs ../venv-ref (see tests/reference/verdicts.py) and python3
#
# Prints one JSON line per (tool, tree) and a ratio table; paste the table into benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_REF=${PY_REF:-../venv-ref/bin/python}
SMALL=../shared/data/taxonomy
BIG=benches/out/taxonomy-10000
[ -f "$BIG/.synthetic-taxonomy" ] || python3 benches/make_tree.py -n 10000 -o "$BIG" >/dev/null
cargo bench --bench validate --no-run >/dev/null 2>&1
out=$(mktemp)
{
  cargo bench -q --bench validate -- "$SMALL" 9
  "$PY_REF" benches/reference_validate.py "$SMALL" --repeat 5
  cargo bench -q --bench validate -- "$BIG" 5
  # The reference spawns yamllint per file: a 300-file even sample of the same tree.
  "$PY_REF" benches/reference_validate.py "$BIG" --limit 300 --repeat 3
} | grep '^{' | tee "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for i in range(0, len(rows), 2):
    lf, ref = rows[i], rows[i + 1]
    print(f"{lf['root']}: labflow {lf['leaves_per_second']:.0f} leaves/s ({lf['files']} files, median {lf['seconds_median']*1000:.1f} ms) | "
          f"reference {ref['leaves_per_second']:.1f} leaves/s ({ref['files']} files) | ratio {lf['leaves_per_second']/ref['leaves_per_second']:.0f}x")
PY
