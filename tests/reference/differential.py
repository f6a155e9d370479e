"""Differential fuzzing: labflow's verdicts against the reference validator's on mutated leaves.

Makes N mutations of the real leaves in ../shared/data/taxonomy (inserted YAML punctuation,
duplicated or re-indented lines, deleted characters, values swapped for YAML 1.1 look-alikes such
as `yes`, `010` or `2024-01-01`), writes them as a taxonomy under a temporary folder, runs
tests/reference/verdicts.py (the reference, as the ilab CLI runs it) and `labflow validate
--format json` on it, and lists every file where valid/invalid differs. Exit status 1 if any does.

Not part of CI (it needs the reference venv and takes about a minute per 400 leaves). Run from the
repo root after `cargo build`:
    ../venv-ref/bin/python tests/reference/differential.py -n 400 --seed 7
"""

import argparse
import json
import pathlib
import random
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE = REPO.parent / "shared" / "data" / "taxonomy"
CHARS = list(" \t\n-:#'\"|>[]{},&*!%?~0123456789abyesno")
LOOKALIKES = [" yes", " 2024-01-01", " 010", " ~", ' "x"', " ", " 1.5", " no", " 0x1F", " 1:30"]


def mutate(text, rng):
    lines = text.split("\n")
    op = rng.randrange(5)
    if op == 0:
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(len(text))
            text = text[:j] + rng.choice(CHARS) + text[j:]
        return text
    if op == 1:
        j = rng.randrange(len(lines))
        lines.insert(j, lines[j])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[j] = " " * rng.randrange(7) + lines[j].lstrip()
    elif op == 3:
        j = rng.randrange(len(text))
        return text[:j] + text[j + 1:]
    else:
        j = rng.randrange(len(lines))
        if ":" in lines[j]:
            key = lines[j].split(":", 1)[0]
            lines[j] = key + ":" + rng.choice(LOOKALIKES)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=400, help="number of mutated leaves")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--labflow", default=str(pathlib.Path.home() / ".cache/labflow/target/debug/labflow"),
                    help="labflow binary (default: the .ci/run build)")
    ap.add_argument("--keep", type=pathlib.Path, help="also copy the generated tree here, to reproduce a difference")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seeds = sorted(SOURCE.rglob("qna.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        tree = pathlib.Path(tmp) / "tree"
        for i in range(args.n):
            src = rng.choice(seeds)
            leaf = tree / src.relative_to(SOURCE).parts[0] / f"m{i:05d}"
            leaf.mkdir(parents=True)
            (leaf / "qna.yaml").write_text(mutate(src.read_text(), rng))
            (leaf / "attribution.txt").write_text("generated\n")
        if args.keep:
            import shutil
            shutil.copytree(tree, args.keep, dirs_exist_ok=True)
        ref_out = pathlib.Path(tmp) / "ref.json"
        subprocess.run([sys.executable, str(REPO / "tests/reference/verdicts.py"), "--root", str(tree), "-o", str(ref_out)],
                       check=True, stdout=subprocess.DEVNULL)
        ours = subprocess.run([args.labflow, "validate", str(tree), "--format", "json"], capture_output=True, text=True)
        reference = json.loads(ref_out.read_text())
    errors = {}
    for d in json.loads(ours.stdout):
        if d["severity"] == "error":
            errors.setdefault(d["path"], []).append(f'{d["line"]}:{d["column"]} {d["code"]}: {d["message"]}')
    differ = 0
    for path, want in reference.items():
        if path.startswith("_") or (path not in errors) == want["valid"]:
            continue
        differ += 1
        print(f"{path}: reference {'valid' if want['valid'] else 'invalid'} {want['messages'][:2]} {want.get('exception', '')[-160:]}")
        print(f"  labflow: {errors.get(path, [])[:3]}")
    print(f"{differ} of {args.n} verdicts differ (seed {args.seed})")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
