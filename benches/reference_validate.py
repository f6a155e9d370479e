"""Time the reference validator (instructlab-schema 0.4.2) over a folder's qna.yaml files.

Each file is checked the way the `ilab` CLI checks it: a fresh
`TaxonomyParser(schema_version=0, message_format=STANDARD,
yamllint_config="{extends: relaxed, rules: {line-length: disable}}",
yamllint_strict=True)` per file, its messages silenced.  The parser spawns the
venv's `yamllint` for every file whose version is above 1; `yq` is kept off
PATH (as in tests/reference/verdicts.py), so it is never spawned.

The reference is slow, so --limit N checks a deterministic sample: N files
spread evenly over the sorted list of paths.  Prints one JSON object:
    {"tool": "reference", "files": n, "seconds_median": s,
     "leaves_per_second": n / s, "runs": [seconds, ...], ...}

Run from the repo root with the reference venv's python, e.g.
    ../venv-ref/bin/python benches/reference_validate.py ../shared/data/taxonomy --repeat 5
    ../venv-ref/bin/python benches/reference_validate.py benches/out/taxonomy-10000 --limit 300
"""

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

SETTINGS = {
    "schema_version": 0,
    "message_format": "STANDARD",
    "yamllint_config": "{extends: relaxed, rules: {line-length: disable}}",
    "yamllint_strict": True,
}


def sample(files, limit):
    files = sorted(files, key=lambda p: p.as_posix())
    if limit is None or limit >= len(files):
        return files
    return [files[i * len(files) // limit] for i in range(limit)]


def run_once(files):
    from instructlab.schema.taxonomy import TaxonomyParser, TaxonomyReadingException

    invalid = 0
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        for f in files:
            try:
                invalid += TaxonomyParser(**SETTINGS).parse(f).errors > 0
            except TaxonomyReadingException:
                invalid += 1
    return time.perf_counter() - start, invalid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder to search for files named qna.yaml")
    ap.add_argument("--limit", type=int, help="check only N files, spread evenly over the sorted paths")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (default 3)")
    args = ap.parse_args()

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "yamllint").exists():
        sys.exit(f"no yamllint beside {sys.executable}: run this with the reference venv's python")
    os.environ["PATH"] = str(bin_dir)  # the venv's yamllint, and no yq
    logging.getLogger("instructlab.schema.taxonomy").setLevel(logging.CRITICAL)

    root = args.root.resolve()
    files = sample([Path(d, "qna.yaml") for d, _, names in os.walk(root) if "qna.yaml" in names], args.limit)
    if not files:
        sys.exit(f"no qna.yaml under {root}")
    runs, invalid = [], 0
    for _ in range(args.repeat):
        seconds, invalid = run_once(files)
        runs.append(round(seconds, 4))
    median = statistics.median(runs)
    print(json.dumps({
        "tool": "reference",
        "files": len(files),
        "seconds_median": round(median, 4),
        "leaves_per_second": round(len(files) / median, 1),
        "runs": runs,
        "invalid": invalid,
        "root": root.name,
    }))


if __name__ == "__main__":
    main()
