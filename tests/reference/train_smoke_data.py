"""Make the trainer's smoke data, tests/fixtures/train/{knowledge,skills}.jsonl, from the seed
examples of the real public taxonomy in ../shared/data/taxonomy (Apache-2.0; the CC BY-NC-SA
synonyms leaf is left out).

Records are in the reference mix schema (`id`, `messages`, `metadata` as a JSON string,
`unmask`): the knowledge file holds each knowledge seed example with its context in the user
turn and `unmask: true` (phase 1), the skills file every skill seed example (grounded ones with
their context) with `unmask: false` (phase 2). Run from the repo root:

    python3 tests/reference/train_smoke_data.py
"""

import hashlib
import json
import os

import yaml

TAXONOMY = "../shared/data/taxonomy"
OUT = "tests/fixtures/train"
SYSTEM = "You are a careful assistant."
SKIP = {"compositional_skills/linguistics/synonyms"}


def leaves():
    for root, _, files in sorted(os.walk(TAXONOMY)):
        if "qna.yaml" in files:
            rel = os.path.relpath(root, TAXONOMY)
            if rel not in SKIP:
                yield rel, yaml.safe_load(open(os.path.join(root, "qna.yaml")))


def record(leaf, i, user, assistant, unmask):
    rid = hashlib.sha256(f"{leaf}/{i}".encode()).hexdigest()[:32]
    return {
        "id": rid,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user.strip()},
            {"role": "assistant", "content": assistant.strip()},
        ],
        "metadata": json.dumps({"leaf": leaf, "seed": i}),
        "unmask": unmask,
    }


def main():
    knowledge, skills = [], []
    for leaf, doc in leaves():
        n = 0
        for ex in doc.get("seed_examples", []):
            if "questions_and_answers" in ex:  # knowledge v3
                for qa in ex["questions_and_answers"]:
                    user = f"{ex['context'].strip()}\n\n{qa['question']}"
                    knowledge.append(record(leaf, n, user, qa["answer"], True))
                    n += 1
            else:
                user = ex["question"] if not ex.get("context") else f"{ex['context'].strip()}\n\n{ex['question']}"
                skills.append(record(leaf, n, user, ex["answer"], False))
                n += 1
    os.makedirs(OUT, exist_ok=True)
    for name, rows in [("knowledge", knowledge), ("skills", skills)]:
        with open(os.path.join(OUT, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{OUT}/{name}.jsonl: {len(rows)} records")


if __name__ == "__main__":
    main()
