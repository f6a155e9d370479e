"""PyTorch peer of labflow's trainer benchmark: full fine-tuning of SmolLM2-135M in float32 on the
CPU, packed rows, AdamW, as a PyTorch/transformers user would run it.

What one step is (timed, wall clock): zero_grad, forward of one packed row of --seq-len tokens,
the masked next-token loss, backward, torch.nn.utils.clip_grad_norm_(params, 1.0), and
torch.optim.AdamW(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0).step().
  - model: models/hf/smollm2-f32 (from tests/reference/safetensors_fixture.py), float32, every
    parameter trained (lm_head tied to embed_tokens), attention --attn (default "sdpa", what
    transformers picks for a PyTorch user; "eager" is the reference fixture's);
  - rows: random token ids (numpy default_rng(--seed)); each row packs sequences of random
    lengths in [--min-len, --max-len] (the last one cut to fill the row), position_ids restart at
    0 per sequence, and a [1, 1, T, T] float additive mask is block-diagonal causal (attention
    never crosses a sequence); every token t >= 1 of every sequence is a target, loss = sum of CE /
    number of targets. A fresh row per step, built before timing.
  - one untimed warm-up step, then --steps timed ones; torch.set_num_threads(--threads).
Prints one JSON object (and writes it to --json PATH): per-step seconds and tokens/s (row tokens
per second), their medians, the median split of a step into forward (+ loss), backward and
clip + AdamW, the losses, and the process's peak RSS (getrusage ru_maxrss, MiB).

Setup: the venv of tests/reference/safetensors_fixture.py (/work/venv-model: torch transformers
accelerate gguf safetensors tokenizers numpy) and its models/hf/smollm2-f32 folder.

Run from the repo root:
    /work/venv-model/bin/python benches/train_torch.py [--threads 2] [--steps 5] [--seq-len 1024] \
        [--attn sdpa|eager] [--json benches/out/train_torch.json]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

VOCAB = 49152


def make_row(rng, seq_len, min_len, max_len):
    """(input_ids, position_ids, lengths) of one row packed from random-length sequences."""
    lengths, left = [], seq_len
    while left > 0:
        n = min(int(rng.integers(min_len, max_len + 1)), left)
        lengths.append(n)
        left -= n
    ids = rng.integers(0, VOCAB, size=seq_len)
    pos = np.concatenate([np.arange(n) for n in lengths])
    return torch.tensor(ids[None], dtype=torch.long), torch.tensor(pos[None], dtype=torch.long), lengths


def block_causal_mask(lengths):
    seq_of = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    i = torch.arange(len(seq_of))
    allowed = (i[None, :] <= i[:, None]) & (seq_of[:, None] == seq_of[None, :])
    mask = torch.zeros(len(seq_of), len(seq_of), dtype=torch.float32)
    mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return mask[None, None]


def targets(ids, lengths):
    """(rows of the logits, target ids) for every t >= 1 of every sequence."""
    rows, off = [], 0
    for n in lengths:
        rows.append(torch.arange(off, off + n - 1))
        off += n
    rows = torch.cat(rows)
    return rows, ids[0, rows + 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/hf/smollm2-f32")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--min-len", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    batches = []
    for _ in range(args.steps + 1):
        ids, pos, lengths = make_row(rng, args.seq_len, args.min_len, args.max_len)
        rows, tgt = targets(ids, lengths)
        batches.append((ids, pos, block_causal_mask(lengths), rows, tgt, lengths))

    seconds, parts, losses, norms = [], [], [], []
    for k, (ids, pos, mask, rows, tgt, lengths) in enumerate(batches):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits[0]
        loss = torch.nn.functional.cross_entropy(logits[rows], tgt)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t3 = time.perf_counter()
        dt = t3 - t0
        loss = float(loss.detach())
        if k > 0:  # step 0 is the warm-up
            seconds.append(dt)
            parts.append([t1 - t0, t2 - t1, t3 - t2])
            losses.append(loss)
            norms.append(float(norm))
        print(f"{'warm-up' if k == 0 else f'step {k}'}: {dt:.3f} s (forward {t1 - t0:.3f}, backward {t2 - t1:.3f}, "
              f"clip + AdamW {t3 - t2:.3f}), {args.seq_len / dt:.1f} tok/s, "
              f"loss {loss:.4f}, {len(lengths)} sequences", flush=True)

    tok_s = [args.seq_len / s for s in seconds]
    result = {
        "bench": "train_torch",
        "model": args.model,
        "attn_implementation": model.config._attn_implementation,
        "dtype": "float32",
        "threads": args.threads,
        "seq_len": args.seq_len,
        "seq_lengths": [args.min_len, args.max_len],
        "steps": args.steps,
        "median_tokens_per_s": statistics.median(tok_s),
        "median_seconds_per_step": statistics.median(seconds),
        "tokens_per_s": tok_s,
        "seconds_per_step": seconds,
        "median_seconds_forward_backward_optimizer": [statistics.median(p[i] for p in parts) for i in range(3)],
        "losses": losses,
        "grad_norms": norms,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
