"""Record llama.cpp's tokenisation, chat rendering, greedy tokens and logits for the SmolLM2 GGUF.

The reference is llama.cpp through `llama-cpp-python` (version recorded in "_meta"), run on the same
GGUF file labflow loads, with one thread so that runs repeat exactly.  Chat renderings come from
jinja2 (the engine Hugging Face uses) applied to the GGUF's own `tokenizer.chat_template`, so the
template check does not depend on labflow's minijinja.

What is recorded (tests/model_llama_cpp.rs and the unit tests in src/model/ read it):
  tokenize:  [{text, ids}]                  llama.cpp ids, add_bos=False, special=True
  chat:      [{messages, add_generation_prompt, rendered}]
  greedy:    [{name, kind, prompt, prompt_ids, tokens, margins, text,
               top_logits: [[id, logit]...],  the 64 largest next-token logits after the prompt
               sample_logits: [[id, logit]...]}]  256 fixed, spread-out ids, same position
  margins[i] is llama.cpp's gap between its best and second-best logit at generated step i: a
  small margin marks a near-tie where an f32 reference may legitimately choose differently.

A second reference isolates llama.cpp's quantised arithmetic: the same GGUF re-written by
llama.cpp's own `llama_model_quantize` as ALL_F32 (weights exactly the dequantised values), run
with an f32 KV cache.  Its results are stored per prompt under "f32": {tokens, margins,
top_logits, sample_logits} (same ids as above).  labflow's f32 reference should agree with it
closely; the distance to the Q4_1 run is llama.cpp's Q8_1-activation / f16-KV rounding.

Greedy decoding is done here by hand (argmax of llama.cpp's logits, one token at a time), not with
llama.cpp's sampler, so that "greedy" means exactly argmax on both sides.

Setup (once, outside the repo):
    python3 -m venv /work/venv-llama && /work/venv-llama/bin/pip install llama-cpp-python jinja2

Run from the repo root (model from `bash models/fetch.sh`):
    /work/venv-llama/bin/python tests/reference/llama_cpp_fixtures.py \
        -o tests/fixtures/model/llama_cpp_smollm2.json
"""

import argparse
import hashlib
import json
import os
import platform

import jinja2
import llama_cpp
import llama_cpp.llama
import numpy as np
from llama_cpp import Llama

# llama.cpp's "extra buffer types" (AMX / repacked weights) crash with SIGSEGV in
# ggml_backend_amx_mul_mat on this machine kind (AMX-capable Xeon VM, llama-cpp-python 0.3.36).
# `Llama` has no parameter for it, so turn it off in the default model params: llama.cpp then
# uses its plain CPU kernels (Q4_1 x Q8_1 dot products), which is also the path most CPUs take.
_default_model_params = llama_cpp.llama_model_default_params


def _model_params_without_extra_bufts():
    params = _default_model_params()
    params.use_extra_bufts = False
    return params


llama_cpp.llama_model_default_params = _model_params_without_extra_bufts
llama_cpp.llama.llama_cpp.llama_model_default_params = _model_params_without_extra_bufts

MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
N_GEN = 32

TOKENIZE = [
    "Hello, world!",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "   leading spaces and\ttabs\n\nand  double  spaces   ",
    "naïve café, Ünïcödé — “quotes” and emoji 🎉🚀",
    "日本語のテキストと中文文本",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x ** 2  # square\n",
    "1234567890 12 345",
    "don't won't I'm you're it's",
    "<|endoftext|>text after eos",
    "a",
    "",
    "\n\n\n",
    "https://example.com/path?q=1&r=two#frag",
]

SYSTEM = "You are a concise assistant."
CHATS = [
    ([{"role": "user", "content": "What is the capital of France?"}], True),
    ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three primary colors."}], True),
    (
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a fact about octopuses."},
        ],
        True,
    ),
    ([{"role": "user", "content": "No generation prompt here."}], False),
]

GREEDY = [
    ("chat_capital", "chat", [{"role": "user", "content": "What is the capital of France?"}]),
    ("chat_colors", "chat", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three primary colors."}]),
    ("chat_octopus", "chat", CHATS[2][0]),
    ("raw_story", "raw", "Once upon a time, in a small village by the sea,"),
    ("raw_code", "raw", "def fibonacci(n):\n    \"\"\""),
]


def render(template, messages, add_generation_prompt):
    env = jinja2.Environment(trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=False)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def decode_case(m, ids, sample_ids):
    """Prompt logits (top 64 by value, and at sample_ids) and N_GEN argmax tokens with margins."""
    m.reset()
    m.eval(ids)
    first = np.array(m.scores[m.n_tokens - 1], dtype=np.float32)
    order = np.argsort(-first, kind="stable")
    top = [[int(i), float(first[i])] for i in order[:64]]
    sample = [[i, float(first[i])] for i in sample_ids]
    tokens, margins = [], []
    logits = first
    for _ in range(N_GEN):
        o = np.argsort(-logits, kind="stable")
        tok = int(o[0])
        tokens.append(tok)
        margins.append(float(logits[o[0]] - logits[o[1]]))
        m.eval([tok])
        logits = np.array(m.scores[m.n_tokens - 1], dtype=np.float32)
    return {"tokens": tokens, "margins": margins, "top_logits": top, "sample_logits": sample}


def f32_copy(model, path):
    """The GGUF re-written as ALL_F32 by llama.cpp itself."""
    import ctypes

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(model.encode(), path.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize to F32 failed: {rc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--f32-tmp", default="/tmp/labflow-smollm2-f32.gguf", help="where to write the F32 copy")
    args = ap.parse_args()

    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    m = Llama(args.model, n_ctx=1024, n_threads=1, logits_all=True, verbose=False)
    template = m.metadata["tokenizer.chat_template"]
    vocab = m.n_vocab()

    out = {
        "_meta": {
            "llama_cpp_python": llama_cpp.__version__,
            "jinja2": jinja2.__version__,
            "python": platform.python_version(),
            "model": args.model,
            "model_sha256": sha,
            "n_threads": 1,
            "use_extra_bufts": False,
            "n_gen": N_GEN,
        },
        "tokenize": [],
        "chat": [],
        "greedy": [],
    }
    for text in TOKENIZE:
        ids = m.tokenize(text.encode(), add_bos=False, special=True)
        out["tokenize"].append({"text": text, "ids": ids})
    for messages, agp in CHATS:
        out["chat"].append({"messages": messages, "add_generation_prompt": agp, "rendered": render(template, messages, agp)})

    rng = np.random.default_rng(1234)
    sample_ids = sorted(int(i) for i in rng.choice(vocab, size=256, replace=False))
    for name, kind, prompt in GREEDY:
        text = render(template, prompt, True) if kind == "chat" else prompt
        ids = m.tokenize(text.encode(), add_bos=False, special=True)
        out["greedy"].append({"name": name, "kind": kind, "prompt": prompt, "prompt_ids": ids})
        case = decode_case(m, ids, sample_ids)
        case["text"] = m.detokenize(case["tokens"]).decode("utf-8", errors="replace")
        out["greedy"][-1].update(case)

    f32_copy(args.model, args.f32_tmp)
    m32 = Llama(args.f32_tmp, n_ctx=1024, n_threads=1, logits_all=True, verbose=False, type_k=0, type_v=0)
    for case in out["greedy"]:
        case["f32"] = decode_case(m32, case["prompt_ids"], sample_ids)
    os.remove(args.f32_tmp)
    with open(args.output, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
