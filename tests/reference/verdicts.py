"""Record the reference validator's verdict on qna.yaml files as a JSON fixture.

The reference is InstructLab's own validator, `instructlab-schema` 0.4.2
(`instructlab.schema.taxonomy.TaxonomyParser`), driven with the settings the
`ilab` CLI uses (see PARSER_SETTINGS below): the schema version comes from each
file's own `version` key, and every yamllint warning counts as an error.  A file
is "valid" iff the parser reports 0 errors (warnings are fine).  If the parser
raises (e.g. the file is not YAML at all, which makes `ilab` abort), the entry
is invalid, counts 1 error and carries an extra "exception" string.

The fixture was made with instructlab-schema 0.4.2, yamllint 1.38.0,
jsonschema 4.26.0, PyYAML 6.0.4 and CPython 3.11.7 (all recorded in "_meta").

Setup (once, outside the repo):
    python3 -m venv ../venv-ref
    ../venv-ref/bin/pip install instructlab-schema==0.4.2 yamllint==1.38.0

Run from the repo root, with the venv's python:
    ../venv-ref/bin/python tests/reference/verdicts.py \
        -o tests/fixtures/reference_verdicts.json        # every qna.yaml under ../shared/data
    ../venv-ref/bin/python tests/reference/verdicts.py --root DIR        # another tree
    ../venv-ref/bin/python tests/reference/verdicts.py --files a/qna.yaml b/qna.yaml

Keys are paths relative to the base directory (--base; by default the --root
that was walked, or the deepest folder holding all --files), with forward
slashes.  Messages are the reference's own STANDARD-format lines
("ERROR: path:line:col ..." / "WARN: ..."); the working directory is set to the
base while parsing, so the paths in them are relative to it too.  The parser
only accepts files named qna.yaml: put hand-made leaves in their own folders
(e.g. compositional_skills/broken_1/qna.yaml), since the first `knowledge` or
`compositional_skills` path component picks the schema.

The parser runs `yamllint` (and optionally `yq`, for line numbers of schema
errors) from PATH; this script sets PATH to the venv's bin folder only, so the
venv's yamllint is used and `yq` is not found (schema errors then report line 1).
Pass --yq EXE to use a mikefarah yq v4 binary instead; its use is recorded in
"_meta".  (The jq-wrapper `yq` from Debian/PyPI cannot evaluate `... | line`, so
with it the reference also falls back to line 1.)
"""

import argparse
import atexit
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO.parent / "shared" / "data"
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"
PARSER_SETTINGS = {
    "schema_version": 0,
    "message_format": "STANDARD",
    "yamllint_config": YAMLLINT_CONFIG,
    "yamllint_strict": True,
}


class PrintCollector:
    """A stdout stand-in that keeps each print() call as one message."""

    def __init__(self):
        self.messages, self._current = [], []

    def write(self, text):
        if text == "\n":  # print() writes its end="\n" separately
            self.messages.append("".join(self._current))
            self._current = []
        else:
            self._current.append(text)

    def flush(self):
        pass


def setup_path(yq=None):
    """Put only the venv's bin (and optionally a chosen yq) on PATH."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "yamllint").exists():
        sys.exit(f"no yamllint beside {sys.executable}: run this with the reference venv's python")
    dirs = [str(bin_dir)]
    if yq:
        shim = Path(tempfile.mkdtemp(prefix="ref-yq-"))
        atexit.register(shutil.rmtree, shim, True)
        (shim / "yq").symlink_to(Path(shutil.which(yq) or yq).resolve())
        dirs.append(str(shim))
    os.environ["PATH"] = os.pathsep.join(dirs)


def make_parser():
    from instructlab.schema.taxonomy import TaxonomyParser

    # A missing yq is expected: drop the parser's traceback about it.
    logging.getLogger("instructlab.schema.taxonomy").addFilter(lambda r: r.msg != "could not run yq command")
    return TaxonomyParser(**PARSER_SETTINGS)


def verdict(parser, path):
    """Parse one file (cwd must be the base) and return its fixture entry."""
    from instructlab.schema.taxonomy import TaxonomyReadingException

    out = PrintCollector()
    try:
        with contextlib.redirect_stdout(out):
            taxonomy = parser.parse(path)
    except TaxonomyReadingException as e:
        cause = e.__cause__ or e
        text = f"{type(cause).__name__}: {cause}"
        return {"valid": False, "errors": 1, "warnings": 0, "messages": out.messages, "exception": text}
    # "does not exist" quotes an absolute path; "Cannot load schema file" quotes the venv's.
    out.messages = [m.replace(f"{Path.cwd()}{os.sep}", "").replace(sys.prefix, "<venv>") for m in out.messages]
    counted = sum(m.startswith(("ERROR: ", "WARN: ")) for m in out.messages)
    assert counted == taxonomy.errors + taxonomy.warnings, (path, out.messages)
    return {
        "valid": taxonomy.errors == 0,
        "errors": taxonomy.errors,
        "warnings": taxonomy.warnings,
        "messages": out.messages,
    }


def meta(yq):
    versions = {p: version(p) for p in ("instructlab-schema", "yamllint", "jsonschema", "PyYAML")}
    versions["python"] = sys.version.split()[0]
    return {
        "versions": versions,
        "parser": {"class": "instructlab.schema.taxonomy.TaxonomyParser", **PARSER_SETTINGS},
        "yq": "mikefarah yq (given with --yq)" if yq else "not on PATH: schema errors report line 1",
        "valid_means": "0 errors (warnings allowed); 'exception' present if the parser raised",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help=f"walk this folder for files named qna.yaml (default {DEFAULT_ROOT})")
    ap.add_argument("--files", type=Path, nargs="+", metavar="FILE", help="check these files instead of walking")
    ap.add_argument("--base", type=Path, help="make keys and messages relative to this folder")
    ap.add_argument("-o", "--output", default="-", help="JSON output file (default: stdout)")
    ap.add_argument("--yq", help="a mikefarah yq v4 executable to give the parser (default: none)")
    args = ap.parse_args()
    if args.root and args.files:
        ap.error("give --root or --files, not both")

    if args.files:
        files = [f.resolve() for f in args.files]
        base = args.base or Path(os.path.commonpath([f.parent for f in files]))
    else:
        root = (args.root or DEFAULT_ROOT).resolve()
        files = [Path(d, n) for d, _, names in os.walk(root) for n in names if n == "qna.yaml"]
        base = args.base or root
    base = base.resolve()
    output = None if args.output == "-" else Path(args.output).resolve()

    setup_path(args.yq)
    parser = make_parser()
    os.chdir(base)
    result = {}
    for f in files:
        key = Path(os.path.relpath(f, base)).as_posix()
        result[key] = verdict(parser, key)
    result = {k: result[k] for k in sorted(result)}
    valid = sum(v["valid"] for v in result.values())
    document = {"_meta": meta(args.yq), **result}

    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(f"{len(result)} files: {valid} valid, {len(result) - valid} invalid", file=sys.stderr)


if __name__ == "__main__":
    main()
