#!/usr/bin/env python3
"""Cross-check for tests/mix.rs: labflow's mixes read by Hugging Face `datasets` (3.6.0, as
instructlab-sdg 0.8.3's mixer uses it) with the features the reference's mixes have, and
concatenated with the reference's real knowledge mix, which `datasets` refuses when features do
not align (the reference's mixer concatenates its datasets the same way).

    python3 tests/reference/mix_datasets.py MIX_DIR REFERENCE_JSONL

Prints one JSON line: rows per file and the features, for the Rust test to compare.
"""
import json
import sys

import datasets

datasets.disable_progress_bars()
mix_dir, reference = sys.argv[1], sys.argv[2]
ref = datasets.load_dataset("json", data_files=reference, split="train")
# The reference sample has no `unmask` column (its mixer adds one only in newer versions); give
# it the column the schema has, False as `_sample_ds` does.
if "unmask" not in ref.column_names:
    ref = ref.add_column("unmask", [False] * len(ref))
want = datasets.Features({
    "id": datasets.Value("string"),
    "messages": [{"content": datasets.Value("string"), "role": datasets.Value("string")}],
    "metadata": datasets.Value("string"),
    "unmask": datasets.Value("bool"),
})
report = {}
for name in ("knowledge_train_msgs", "skills_train_msgs"):
    js = datasets.load_dataset("json", data_files=f"{mix_dir}/{name}.jsonl", split="train")
    pq = datasets.load_dataset("parquet", data_files=f"{mix_dir}/{name}.parquet", split="train")
    for ds, kind in ((js, "jsonl"), (pq, "parquet")):
        got = {k: ds.features[k] for k in sorted(ds.features)}
        assert set(got) == set(want), f"{name}.{kind}: columns {sorted(got)}"
        assert ds.features["messages"] == want["messages"] or str(ds.features["messages"]) == str(want["messages"]), (
            f"{name}.{kind}: messages {ds.features['messages']}"
        )
        ds = ds.cast(want)
        both = datasets.concatenate_datasets([ref.cast(want), ds])
        assert len(both) == len(ref) + len(ds)
    assert js.to_list() == pq.cast(want).to_list(), f"{name}: JSONL and Parquet differ"
    json.loads(js[0]["metadata"])
    report[name] = len(js)
print(json.dumps(report))
