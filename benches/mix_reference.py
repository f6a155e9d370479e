#!/usr/bin/env python3
"""The peer of `labflow mix` in benches/run_mix.sh: instructlab-sdg 0.8.3's own mixer
(`instructlab.sdg.datamixing.DataMixer`, unmodified) over the rows benches/mix_make_run.py wrote.

    python3 benches/mix_reference.py SDG_DIR RUN OUT [NUM_PROCS]

SDG_DIR is the unpacked instructlab-sdg wheel. The package's `__init__` imports torch, docling
and the generation blocks, none of which mixing uses, so `instructlab` and `instructlab.sdg`
are registered as bare packages over the wheel's folders and only `datamixing` (with its
`utils` imports) is loaded: the code that runs is the wheel's. Each leaf's rows are loaded as a
Hugging Face Dataset first (in the reference they come out of the generation pipeline in
memory), then the timed part runs what `generate_data` runs after generation:
`DataMixer.collect` per leaf, then `DataMixer.generate`. Prints one JSON line.
"""
import glob
import json
import os
import resource
import sys
import time
import types

sdg_dir, run, out = sys.argv[1], sys.argv[2], sys.argv[3]
procs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
for name, path in (("instructlab", f"{sdg_dir}/instructlab"), ("instructlab.sdg", f"{sdg_dir}/instructlab/sdg")):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module

import datasets  # noqa: E402
from instructlab.sdg.datamixing import DataMixer  # noqa: E402

datasets.disable_progress_bars()
SYS = (
    "I am an advanced AI language model designed to assist you with a wide range of tasks and provide "
    "helpful, clear, and accurate responses. My primary role is to serve as a chat assistant, engaging in "
    "natural, conversational dialogue, answering questions, generating ideas, and offering support across "
    "various topics."
)
t0 = time.time()
inputs = []
for f in sorted(glob.glob(f"{run}/reference/*.jsonl")):
    kind, name = os.path.basename(f)[: -len(".jsonl")].split("__", 1)
    inputs.append((name, datasets.load_dataset("json", data_files=f, split="train"), kind == "knowledge"))
loaded = time.time()
os.makedirs(f"{out}/node_datasets_bench", exist_ok=True)
mixer = DataMixer([], out, "bench", SYS, procs, None)
for name, ds, is_knowledge in inputs:
    mixer.collect(name, ds, is_knowledge, False)
mixer.generate()
done = time.time()
rows = {}
for mix in ("knowledge", "skills"):
    path = f"{out}/{mix}_train_msgs_bench.jsonl"
    rows[mix] = sum(1 for _ in open(path)) if os.path.exists(path) else 0
print(json.dumps({
    "rows_in": sum(len(d) for _, d, _ in inputs),
    "load_seconds": round(loaded - t0, 2),
    "mix_seconds": round(done - loaded, 2),
    "out_rows": rows,
    "max_rss_mib_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    "max_rss_mib_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
}))
