#!/usr/bin/env bash
# Fetch InstructLab's SDG library, instructlab-sdg 0.8.3 (Apache-2.0), from PyPI and unpack its
# pipeline files and prompt configs into tests/reference/.cache/ (git-ignored), for
# tests/ilab_pipelines.rs. The wheel itself is not kept. Idempotent.
#
#   bash tests/reference/fetch_sdg.sh   # → tests/reference/.cache/instructlab-sdg-0.8.3/instructlab/sdg/pipelines
set -euo pipefail
cd "$(dirname "$0")"
version=0.8.3
dest=.cache/instructlab-sdg-$version
if [ -f "$dest/instructlab/sdg/pipelines/full/knowledge.yaml" ]; then
  echo "tests/reference/$dest already present"
  exit 0
fi
tmp=$(mktemp -d)
part=
trap 'rm -rf "$tmp" ${part:+"$part"}' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check "instructlab-sdg==$version" -d "$tmp"
mkdir -p .cache
part=$(mktemp -d .cache/part.XXXXXX)
python3 - "$tmp" "$part" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/instructlab_sdg-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    # Only what the pipelines read: the pipeline files, their schema and the prompt configs.
    names = [n for n in z.namelist() if n.startswith(("instructlab/sdg/pipelines/", "instructlab/sdg/configs/"))]
    z.extractall(sys.argv[2], members=names)
PY
# Another run may have finished first; either copy is the same wheel.
if [ -d "$dest" ]; then rm -rf "$part"; else mv "$part" "$dest"; fi
echo "tests/reference/$dest"
