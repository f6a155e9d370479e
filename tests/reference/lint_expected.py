"""Record yamllint's verdict on every tests/fixtures/lint/*.yaml as tests/fixtures/lint/expected.json.

Runs `yamllint -f parsable -d "{extends: relaxed, rules: {line-length: disable}}"`
(the InstructLab configuration) on each case and writes
  {file: [{line, column, rule, message}, ...]}
keeping only the rules labflow reproduces. Findings of the rules left to the
YAML loader (syntax, key-duplicates, anchors) go to a separate "excluded" map
in the same JSON, so the Rust agreement test can skip files with a syntax error.

Usage (from the repo root): python3 tests/reference/lint_expected.py [path/to/yamllint]
(default: ../venv-ref/bin/yamllint, the venv of tests/reference/verdicts.py; yamllint 1.38.0)
"""
import glob
import json
import os
import re
import subprocess
import sys

YAMLLINT = sys.argv[1] if len(sys.argv) > 1 else "../venv-ref/bin/yamllint"
CONFIG = "{extends: relaxed, rules: {line-length: disable}}"
EXCLUDED = {"syntax", "key-duplicates", "anchors"}
LINE = re.compile(r"^(.*):(\d+):(\d+): \[(?:error|warning)\] (.*) \(([a-z-]+)\)$")

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "lint")
expected, excluded = {}, {}
for path in sorted(glob.glob(os.path.join(here, "*.yaml"))):
    name = os.path.basename(path)
    res = subprocess.run([YAMLLINT, "-f", "parsable", "-d", CONFIG, path],
                         capture_output=True, text=True)
    kept, dropped = [], []
    for line in res.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            raise SystemExit("unparsed yamllint output: " + line)
        item = {"line": int(m[2]), "column": int(m[3]), "rule": m[5], "message": m[4]}
        if item["rule"] == "syntax":
            item["message"] = item["message"].removeprefix("syntax error: ")
        (dropped if item["rule"] in EXCLUDED else kept).append(item)
    expected[name] = kept
    if dropped:
        excluded[name] = dropped
with open(os.path.join(here, "expected.json"), "w") as f:
    json.dump({"expected": expected, "excluded": excluded}, f, indent=1, sort_keys=True)
print(f"{len(expected)} cases, {len(excluded)} with excluded findings")
