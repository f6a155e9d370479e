"""Record what the reference's yamllint says about each *.yaml file in a folder.

Runs the reference venv's yamllint exactly as instructlab-schema 0.4.2 does
(`yamllint -f parsable -d "{extends: relaxed, rules: {line-length: disable}}" -`,
the file's text on stdin) once per file, and writes JSON
    {"file.yaml": [{"line": 3, "column": 1, "level": "error", "rule": "empty-lines",
                    "message": "too many blank lines (1 > 0)"}, ...], ...}
with the files sorted by name; "rule" is the text in the trailing parentheses of
yamllint's message (syntax errors have rule "syntax") and "message" is the rest.
A file with no problems maps to [].  Made with yamllint 1.38.0.

Run from the repo root, e.g.
    ../venv-ref/bin/python tests/reference/lint_expected.py tests/fixtures/lint -o tests/fixtures/lint_expected.json
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"
LINE = re.compile(r"^stdin:(\d+):(\d+): \[(error|warning)\] (.*?)(?: \(([^()]*)\))?$")


def default_yamllint():
    beside = Path(sys.executable).parent / "yamllint"
    return beside if beside.exists() else REPO.parent / "venv-ref" / "bin" / "yamllint"


def lint(yamllint, path):
    text = path.read_text(encoding="utf-8")
    cmd = [str(yamllint), "-f", "parsable", "-d", YAMLLINT_CONFIG, "-"]
    out = subprocess.run(cmd, input=text, text=True, capture_output=True, check=False)
    if out.returncode not in (0, 1, 2) or out.stderr:
        sys.exit(f"yamllint failed on {path}: {out.stderr}")
    problems = []
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            sys.exit(f"unexpected yamllint line for {path}: {line!r}")
        problems.append({
            "line": int(m[1]),
            "column": int(m[2]),
            "level": m[3],
            "rule": m[5] or "",
            "message": m[4],
        })
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="folder whose *.yaml files are linted (not recursive)")
    ap.add_argument("-o", "--output", default="-", help="JSON output file (default: stdout)")
    ap.add_argument("--yamllint", type=Path, default=default_yamllint(), help="yamllint executable (default: the reference venv's)")
    args = ap.parse_args()

    files = sorted(args.folder.glob("*.yaml"))
    result = {f.name: lint(args.yamllint, f) for f in files}
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
