"""llama.cpp beside benches/teacher.rs: prompt processing, single-stream decode and 16-sequence
aggregate decode on the same GGUF, through llama-cpp-python's low-level API (version printed).

    /work/venv-llama/bin/python benches/llama_cpp_teacher.py --threads 1 [--repeat 3]

- prompt:    one 128-token prompt in one llama_decode (logits for the last token only);
- decode_1:  128 tokens, one llama_decode of one token per step (greedy: argmax of its logits);
- decode_16: 16 sequences (seq ids 0..15, each prefilled with a different 64-token window of the
             prompt), then 128 steps of one llama_batch holding 16 tokens (one per seq id, logits
             for all 16): llama.cpp's batched decode, the path its server's parallel slots use.
Medians of --repeat runs after one warm-up; one JSON line per measurement.  The prompt text and
the tokens (labflow's tokenizer agrees with llama.cpp's on it) are those of benches/teacher.rs.

llama-cpp-python 0.3.36 crashes in its AMX matmul path on this machine unless the "extra buffer
types" are off (see tests/reference/llama_cpp_fixtures.py): use_extra_bufts = False here too, so
llama.cpp runs its plain CPU kernels (Q4_1 x Q8_1 dot products, AVX-512/VNNI where present).
"""

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path

import llama_cpp as L
import numpy as np

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a goldsmith from Mainz, "
    "combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books far faster "
    "than any scribe. Within fifty years presses were running in more than two hundred European cities, and the price of "
    "books fell sharply. Scholars argue about how much the new technology changed ideas, but few doubt that it changed how "
    "quickly they travelled. Write a short essay about what came next, and why it mattered."
    " Consider the spread of literacy, the Reformation, the first scientific journals, newspapers, and the cheap pamphlets that carried arguments across borders faster than any army could march."
)
MODEL = Path(__file__).resolve().parent.parent / "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(str(MODEL).encode(), mp)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    cp = L.llama_context_default_params()
    cp.n_ctx = 16 * (64 + 128 + 8)
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_seq_max = 16
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)

    buf = (L.llama_token * 512)()
    n = L.llama_tokenize(vocab, PROMPT.encode(), len(PROMPT.encode()), buf, 512, False, True)
    prompt = list(buf[:n])[:128]
    assert len(prompt) == 128, n

    batch = L.llama_batch_init(512, 0, 16)

    def fill(items):
        """items: [(token, pos, seq, want_logits)]"""
        batch.n_tokens = len(items)
        for i, (tok, pos, seq, lg) in enumerate(items):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if lg else 0
        assert L.llama_decode(ctx, batch) == 0

    def logits(i):
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))

    def prefill(toks, seq):
        fill([(t, p, seq, p == len(toks) - 1) for p, t in enumerate(toks)])

    def timed(f):
        f()
        out = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
        return out

    def emit(what, tokens, runs):
        med = statistics.median(runs)
        print(json.dumps({"tool": "llama.cpp", "version": L.__version__, "bench": what, "threads": args.threads, "tokens": tokens,
                          "seconds_median": med, "tokens_per_second": tokens / med, "runs": runs}), flush=True)

    def pp():
        L.llama_memory_clear(mem, True)
        prefill(prompt, 0)

    emit("prompt", 128, timed(pp))

    def decode(b, n_gen):
        L.llama_memory_clear(mem, True)
        nxt, pos = [], []
        for s in range(b):
            p = prompt[s % 64:s % 64 + 64]
            prefill(p, s)
            nxt.append(int(np.argmax(logits(len(p) - 1))))
            pos.append(len(p))
        t = time.perf_counter()
        for _ in range(n_gen):
            fill([(nxt[s], pos[s], s, True) for s in range(b)])
            nxt = [int(np.argmax(logits(s))) for s in range(b)]
            pos = [p + 1 for p in pos]
        return time.perf_counter() - t

    decode(1, 16)
    emit("decode_1", 128, [decode(1, 128) for _ in range(args.repeat)])
    emit("decode_16", 16 * 128, [decode(16, 128) for _ in range(args.repeat)])
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
