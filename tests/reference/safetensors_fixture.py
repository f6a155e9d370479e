"""Build Hugging Face safetensors folders from the SmolLM2 GGUF with transformers, and record what
transformers computes on them: the independent check of labflow's safetensors path.

None of the code that matters here is labflow's: transformers converts the GGUF (gguf-py
dequantises the Q4_1/Q8_0 tensors, transformers reverse-permutes q_proj/k_proj back to Hugging
Face's rope layout and writes config.json, tokenizer.json, tokenizer_config.json and the chat
template), `save_pretrained` writes the safetensors files (single, sharded, BF16), and torch's
`LlamaForCausalLM` computes the logits.

Folders written (model files: git-ignored, never committed):
  models/hf/smollm2-f32/            model.safetensors, F32
  models/hf/smollm2-f32-sharded/    model-0000X-of-0000N.safetensors + model.safetensors.index.json, F32
  models/hf/smollm2-bf16-sharded/   the same weights rounded to BF16, sharded
tests/model_safetensors.rs loads each folder that exists.

The fixture (small, committed), tests/fixtures/model/safetensors_smollm2.json:
  _meta:    versions, the GGUF's sha256
  tokenize: [{text, ids}]   transformers' tokenizer (converted from the GGUF) on the strings of
                            tests/fixtures/model/llama_cpp_smollm2.json, add_special_tokens=False
  tensors:  {name: {shape, sum, abs_sum, head}}   float64 sums and the first 8 values of every
                            F32 tensor transformers wrote (in Hugging Face layout)
  greedy:   [{name, prompt_ids, hf_prompt_ids, top_logits, sample_logits, tokens, margins,
              bf16: {top_logits, sample_logits, tokens, margins}}]
            torch float32 (eager attention) on the F32 folder, and on the BF16 folder upcast to
            float32 (so: BF16 weights, f32 arithmetic, as labflow does); prompt_ids are the
            llama.cpp fixture's, hf_prompt_ids transformers' own apply_chat_template/encode of
            the same prompt; top_logits are the 64 largest next-token logits after the prompt,
            sample_logits the llama.cpp fixture's 256 spread-out ids; tokens are 32 argmax steps,
            margins the best-minus-second logit gap at each.

Setup (once, outside the repo; torch from PyPI is ~4 GB with its CUDA libraries, CPU is enough):
    python3 -m venv /work/venv-model
    /work/venv-model/bin/pip install torch transformers accelerate gguf safetensors tokenizers numpy

Run from the repo root (model from `bash models/fetch.sh`):
    /work/venv-model/bin/python tests/reference/safetensors_fixture.py
"""

import argparse
import hashlib
import json
import os
import platform
import shutil

import numpy as np
import safetensors
import safetensors.numpy
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF_DIR = "models"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_CPP_FIXTURE = "tests/fixtures/model/llama_cpp_smollm2.json"
N_GEN = 32
N_TOP = 64


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model, tok, out, **kw):
    """`save_pretrained` into a fresh folder (written beside it, then renamed)."""
    tmp = out + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, **kw)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return sorted(os.listdir(out))


def tensor_sums(folder):
    files = [f for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")]
    out = {}
    for f in files:
        for name, a in safetensors.numpy.load_file(os.path.join(folder, f)).items():
            assert a.dtype == np.float32, (name, a.dtype)
            a64 = a.astype(np.float64)
            out[name] = {
                "shape": list(a.shape),
                "sum": float(a64.sum()),
                "abs_sum": float(np.abs(a64).sum()),
                "head": [float(x) for x in a.reshape(-1)[:8]],
            }
    return dict(sorted(out.items()))


@torch.no_grad()
def run(model, prompt_ids, sample_ids):
    """Next-token logits after the prompt, then N_GEN argmax steps on the KV cache."""
    ids = torch.tensor([prompt_ids])
    out = model(input_ids=ids, use_cache=True)
    logits = out.logits[0, -1].float()
    first = logits.clone()
    tokens, margins = [], []
    past = out.past_key_values
    for i in range(N_GEN):
        top2 = torch.topk(logits, 2)
        nxt = int(torch.argmax(logits))
        tokens.append(nxt)
        margins.append(float(top2.values[0] - top2.values[1]))
        if i + 1 < N_GEN:
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
    top = torch.topk(first, N_TOP)
    return {
        "top_logits": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
        "sample_logits": [[int(i), float(first[i])] for i in sample_ids],
        "tokens": tokens,
        "margins": margins,
    }


def load(folder):
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/hf", help="where the folders go (git-ignored)")
    ap.add_argument("-o", "--fixture", default="tests/fixtures/model/safetensors_smollm2.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    gguf_path = os.path.join(GGUF_DIR, GGUF_NAME)
    ref = json.load(open(LLAMA_CPP_FIXTURE))
    assert sha256(gguf_path) == ref["_meta"]["model_sha256"], "a different GGUF than the llama.cpp fixture's"

    tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
    gguf_model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME, dtype=torch.float32)
    # The GGUF-loaded model keeps a GGUF "quantizer" that refuses save_pretrained, though its
    # weights are dequantised f32 already: move them into a plain model of the same config.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(gguf_model)(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()
    model.eval()
    del gguf_model
    os.makedirs(args.out, exist_ok=True)
    f32 = os.path.join(args.out, "smollm2-f32")
    f32_sharded = os.path.join(args.out, "smollm2-f32-sharded")
    bf16_sharded = os.path.join(args.out, "smollm2-bf16-sharded")
    print(f32, save(model, tok, f32, max_shard_size="10GB"))
    print(f32_sharded, save(model, tok, f32_sharded, max_shard_size="200MB"))
    print(bf16_sharded, save(model.to(torch.bfloat16), tok, bf16_sharded, max_shard_size="100MB"))
    del model

    # Everything below reads the folders back, as a user of them would.
    tok = AutoTokenizer.from_pretrained(f32)
    tokenize = [{"text": c["text"], "ids": tok.encode(c["text"], add_special_tokens=False)} for c in ref["tokenize"]]
    for case, mine in zip(ref["tokenize"], tokenize):
        if case["ids"] != mine["ids"]:
            print(f"note: transformers tokenises {case['text']!r} unlike llama.cpp: {mine['ids']} vs {case['ids']}")

    m32, m16 = load(f32), load(bf16_sharded)
    greedy = []
    for case in ref["greedy"]:
        if case["kind"] == "chat":
            hf_ids = tok.apply_chat_template(case["prompt"], add_generation_prompt=True, tokenize=True)
            if isinstance(hf_ids, dict) or hasattr(hf_ids, "keys"):
                hf_ids = hf_ids["input_ids"]
        else:
            hf_ids = tok.encode(case["prompt"], add_special_tokens=False)
        hf_ids = [int(i) for i in hf_ids]
        sample_ids = [p[0] for p in case["sample_logits"]]
        r = run(m32, case["prompt_ids"], sample_ids)
        r16 = run(m16, case["prompt_ids"], sample_ids)
        same = sum(1 for a, b in zip(r["tokens"], case["f32"]["tokens"]) if a == b)
        print(f"{case['name']:14} prompt ids equal llama.cpp's: {hf_ids == case['prompt_ids']}; "
              f"greedy tokens equal to llama.cpp F32 run: {r['tokens'] == case['f32']['tokens']} ({same}/{N_GEN}); "
              f"bf16 greedy equal to f32: {r16['tokens'] == r['tokens']}")
        greedy.append({"name": case["name"], "kind": case["kind"], "prompt_ids": case["prompt_ids"], "hf_prompt_ids": hf_ids,
                       **r, "bf16": r16})

    fixture = {
        "_meta": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "safetensors": safetensors.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "model": gguf_path,
            "model_sha256": ref["_meta"]["model_sha256"],
            "folders": [f32, f32_sharded, bf16_sharded],
            "n_gen": N_GEN,
            "attn_implementation": "eager",
        },
        "tokenize": tokenize,
        "tensors": tensor_sums(f32),
        "greedy": greedy,
    }
    with open(args.fixture, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", args.fixture)


if __name__ == "__main__":
    main()
