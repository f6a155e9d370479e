#!/usr/bin/env python3
"""Write a synthetic run folder for the mixing bench: ROWS generated rows over skill and
knowledge leaves, laid out as `labflow generate` writes a run (manifest.json + one Parquet file
per leaf under generated/), plus the same rows as one JSONL file per leaf under reference/ for
instructlab-sdg's mixer (benches/mix_reference.py).

    python3 benches/mix_make_run.py OUT [ROWS]     # needs pyarrow (the bench venv has it)

Half the rows are knowledge rows (leaves of 2,500 rows over 10 chunks of ~120 words), half skill
rows (leaves of 1,000 rows); questions and answers are 12 and 40 words from a 5,000-word
vocabulary, seeded, so every row is distinct and near-duplicate detection has work to do.
"""
import json
import os
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
rng = random.Random(7)
vocab = [f"w{i}" for i in range(5000)]


def words(n):
    return " ".join(rng.choice(vocab) for _ in range(n))


KNOW_PER_LEAF, SKILL_PER_LEAF, CHUNKS = 2500, 1000, 10
n_know = max(1, rows // 2 // KNOW_PER_LEAF)
n_skill = max(1, (rows - n_know * KNOW_PER_LEAF) // SKILL_PER_LEAF)
leaves = []
os.makedirs(os.path.join(out, "reference"), exist_ok=True)
for kind, count, per in (("knowledge", n_know, KNOW_PER_LEAF), ("freeform_skill", n_skill, SKILL_PER_LEAF)):
    for li in range(count):
        leaf = f"{'knowledge/bench' if kind == 'knowledge' else 'compositional_skills/bench'}/leaf{li:04d}"
        ids = [f"{i:05d}" for i in range(per)]
        q = [words(12) + "?" for _ in range(per)]
        r = [words(40) for _ in range(per)]
        cols = {"_id": ids}
        if kind == "knowledge":
            chunks = [words(120) for _ in range(CHUNKS)]
            cols.update(
                domain=["bench"] * per,
                document_outline=["a synthetic document"] * per,
                document=[chunks[i % CHUNKS] for i in range(per)],
            )
        else:
            cols.update(task_description=["a synthetic skill"] * per, seed_question=["q"] * per, seed_response=["r"] * per)
        cols.update(question=q, response=r)
        rel = f"generated/{leaf}/bench.parquet"
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        table = pa.table(cols)
        pq.write_table(table, os.path.join(out, rel))
        size = os.path.getsize(os.path.join(out, rel))
        leaves.append({
            "leaf": leaf, "hash": "0" * 64, "kind": kind, "pipeline": kind, "seeds": "", "fingerprint": "",
            "rows": per, "rejects": 0, "files": [{"path": rel, "rows": per, "bytes": size}], "steps": [], "error": None,
        })
        # The reference's input: the generated rows as its pipelines leave them (leaf_node_path
        # names the leaf, as in generate_data.py).
        name = leaf.replace("/", "_")
        with open(os.path.join(out, "reference", f"{kind}__{name}.jsonl"), "w") as f:
            for i in range(per):
                row = {k: v[i] for k, v in cols.items() if k != "_id"}
                row["leaf_node_path"] = name
                f.write(json.dumps(row) + "\n")
leaves.sort(key=lambda l: l["leaf"])
manifest = {"format": 2, "labflow": "bench", "teacher": "none", "pipelines": [], "leaves": leaves}
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f)
print(f"{out}: {sum(l['rows'] for l in leaves)} rows, {n_know} knowledge and {n_skill} skill leaves")
