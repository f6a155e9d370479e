"""Record what PyTorch computes for one packed training batch on SmolLM2-135M: the independent
check of labflow's trainer (forward on a packed row, masked next-token loss, backward, AdamW).

None of the arithmetic that matters here is labflow's: torch's `LlamaForCausalLM` (transformers,
float32, eager attention) computes the logits on the F32 Hugging Face folder written by
tests/reference/safetensors_fixture.py, torch autograd the gradients, and `torch.optim.AdamW` and
`torch.nn.utils.clip_grad_norm_` the two optimiser steps.

The batch (stored in the fixture, so the Rust test uses exactly the same one):
  3 sequences of 37, 19 and 52 tokens; ids from one numpy.random.default_rng(SEED) drawn in order
  (`integers(0, 49152, size=len)` per sequence), the first id of each forced to 1 (<|im_start|>).
  train[t] == 1 marks token t as a trained target (train[0] is always 0); the ranges below are
  half-open: seq 0 trains [20, 37), seq 1 [1, 19), seq 2 [10, 30) and [40, 52): N = 67 targets.
  Packed into ONE row of 108 tokens: position_ids restart at 0 for each sequence, attention is
  causal and never crosses a sequence boundary (a [1, 1, 108, 108] float additive mask: 0 where
  allowed, finfo(float32).min where not, passed as `attention_mask`; transformers uses a 4D mask
  as given). The packing is checked: each sequence run alone must give the same logits
  (max abs diff < 1e-4, recorded as _meta.packing_max_abs_diff); the same row with a plain causal
  mask (attention crossing the boundaries) must not (_meta.unpacked_max_abs_diff). Positions that
  do not restart change the logits only by rounding (RoPE scores depend on position differences
  alone): _meta.unrestarted_positions_max_abs_diff says how little, so a logits check alone hardly
  sees a position bug. Eager attention ADDS a 4D mask as given: a bool mask (True = attend) would
  be added as 1/0 and mask nothing, hence the float one (sdpa takes either).

Loss (computed here from the logits; no labels are passed to the model):
  loss = sum over sequences s, targets t (t >= 1, train[t] == 1) of
         CE(logits[offset_s + t - 1], ids_s[t])  /  N      (N = targets in the whole batch,
  not a mean of per-sequence means); CE = logsumexp(logits) - logits[target], float32.

Optimiser: torch.optim.AdamW(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0), default
  (for-loop, non-fused, non-amsgrad) implementation on CPU; per step k (from 1), for each element:
      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
      p -= (lr / (1 - b1^k)) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)
  Each step = zero_grad, forward, loss, backward, clip_grad_norm_(params, 1.0), step.
  clip_grad_norm_: total = L2 norm of all grads (float32, as torch computes it), then every grad
  *= min(1, 1.0 / (total + 1e-6)); it returns the pre-clip total.

The fixture (small, committed), tests/fixtures/train/torch_step_smollm2.json:
  _meta:      versions, sha256 of models/hf/smollm2-f32/model.safetensors, packing checks,
              optimiser settings, thread count, wall seconds
  batch:      {seed, sequences: [{ids, train, offset, targets}], packed: {input_ids,
              position_ids}, n_targets}   (targets: the trained t, in order)
  loss:       {value, per_target: [[CE for each trained t of seq s, in order], ...]}
  logits:     [{position, top: [[id, value] x 16], sample: [[id, value] x 8]}] at packed
              positions 0, 36, 37, 55, 56, 107 (before any step)
  grads:      {global_norm_f64, clip_returned_norm, params: {name: {shape, sum, abs_sum,
              indices, values, head, init}}}   the gradient of the loss before any step and
              before clipping (sums float64; values at 8 flat indices np.linspace(0, numel-1, 8);
              head: the first 4; init: the parameter's initial values at the indices)
  steps:      [{step, loss_before, clip_returned_norm, params: {name: {values, delta_sum}}}]
              after AdamW step 1 and 2: parameter values at the same indices, and float64
              sum(param_after - param_initial)
  loss_after: the loss on the batch after the second step (a third forward, no grad)
Parameters are named as model.named_parameters() gives them: SmolLM2 ties lm_head to
embed_tokens, so the one `model.embed_tokens.weight` carries both gradients.

Setup (once, outside the repo; torch from PyPI is ~4 GB with its CUDA libraries, CPU is enough):
    python3 -m venv /work/venv-model
    /work/venv-model/bin/pip install torch transformers accelerate gguf safetensors tokenizers numpy
    bash models/fetch.sh
    /work/venv-model/bin/python tests/reference/safetensors_fixture.py   # models/hf/smollm2-f32/

Run from the repo root (one to two minutes on 2 cores):
    /work/venv-model/bin/python tests/reference/train_fixture.py
"""

import argparse
import hashlib
import json
import os
import platform
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

MODEL_DIR = "models/hf/smollm2-f32"
SEED = 7
VOCAB = 49152
LENGTHS = [37, 19, 52]
TRAIN_RANGES = [[(20, 37)], [(1, 19)], [(10, 30), (40, 52)]]
LOGIT_POSITIONS = [0, 36, 37, 55, 56, 107]
SAMPLE_IDS = [0, 1, 2, 100, 1000, 10000, 30000, 49151]
N_TOP = 16
N_INDICES = 8
N_HEAD = 4
LR, BETAS, EPS, WEIGHT_DECAY, CLIP = 1e-4, (0.9, 0.95), 1e-8, 0.0, 1.0
THREADS = 2
PACKING_TOL = 1e-4


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_batch():
    rng = np.random.default_rng(SEED)
    seqs, offset = [], 0
    for n, ranges in zip(LENGTHS, TRAIN_RANGES):
        ids = [int(x) for x in rng.integers(0, VOCAB, size=n)]
        ids[0] = 1
        train = [0] * n
        for a, b in ranges:
            for t in range(a, b):
                train[t] = 1
        assert train[0] == 0
        seqs.append({"ids": ids, "train": train, "offset": offset,
                     "targets": [t for t in range(1, n) if train[t]]})
        offset += n
    input_ids = [i for s in seqs for i in s["ids"]]
    position_ids = [p for s in seqs for p in range(len(s["ids"]))]
    return seqs, input_ids, position_ids


def block_mask(seqs, total, packed=True):
    """[1, 1, T, T] additive float mask: 0 where query i may attend key j, finfo.min elsewhere."""
    seq_of = torch.empty(total, dtype=torch.long)
    for k, s in enumerate(seqs):
        seq_of[s["offset"]:s["offset"] + len(s["ids"])] = k
    i = torch.arange(total)
    allowed = i[None, :] <= i[:, None]
    if packed:
        allowed &= seq_of[:, None] == seq_of[None, :]
    mask = torch.zeros(total, total, dtype=torch.float32)
    mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return mask[None, None]


def forward(model, input_ids, position_ids, mask):
    return model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False).logits[0]


def batch_loss(logits, seqs):
    """(loss, per-sequence CE tensors): sum of every target's CE over the batch / N."""
    per_seq, total, n = [], logits.new_zeros(()), 0
    for s in seqs:
        t = torch.tensor(s["targets"], dtype=torch.long)
        rows = logits[s["offset"] + t - 1]
        ce = torch.nn.functional.cross_entropy(rows, torch.tensor(s["ids"])[t], reduction="none")
        per_seq.append(ce)
        total = total + ce.sum()
        n += len(s["targets"])
    return total / n, per_seq


def spread_indices(numel):
    return np.linspace(0, numel - 1, N_INDICES).astype(np.int64)


def at(t, idx):
    flat = t.detach().reshape(-1)
    return [float(flat[int(i)]) for i in idx]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=MODEL_DIR)
    ap.add_argument("-o", "--fixture", default="tests/fixtures/train/torch_step_smollm2.json")
    args = ap.parse_args()
    start = time.time()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    cfg = model.config
    assert cfg.tie_word_embeddings and getattr(cfg, "attention_dropout", 0.0) == 0.0
    model.train()
    params = dict(model.named_parameters())
    names = list(params)
    assert "lm_head.weight" not in params and "model.embed_tokens.weight" in params
    assert model.lm_head.weight is params["model.embed_tokens.weight"]
    indices = {k: spread_indices(p.numel()) for k, p in params.items()}
    initial = {k: p.detach().clone() for k, p in params.items()}

    seqs, packed_ids, packed_pos = make_batch()
    total = len(packed_ids)
    assert total == sum(LENGTHS) == 108
    ids_t = torch.tensor([packed_ids])
    pos_t = torch.tensor([packed_pos])
    mask = block_mask(seqs, total)

    # Packing check: each sequence alone (no mask, default positions) vs its slice of the packed row;
    # and the same row with a causal-only mask, which must differ after the first sequence.
    with torch.no_grad():
        packed_logits = forward(model, ids_t, pos_t, mask)
        pack_diff = 0.0
        for s in seqs:
            alone = model(input_ids=torch.tensor([s["ids"]]), use_cache=False).logits[0]
            sl = packed_logits[s["offset"]:s["offset"] + len(s["ids"])]
            pack_diff = max(pack_diff, float((alone - sl).abs().max()))
        crossing = forward(model, ids_t, pos_t, block_mask(seqs, total, packed=False))
        unpacked_diff = float((crossing - packed_logits).abs().max())
        unrestarted = forward(model, ids_t, torch.arange(total)[None], mask)
        unrestarted_diff = float((unrestarted - packed_logits).abs().max())
    print(f"packing: max |packed - alone| = {pack_diff:.3g}; causal-only mask differs by {unpacked_diff:.3g}; "
          f"positions 0..{total - 1} (not restarted) by {unrestarted_diff:.3g}")
    assert pack_diff < PACKING_TOL, pack_diff
    assert unpacked_diff > 1e-2, unpacked_diff

    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    fixture_logits, grads, steps, loss_rec = None, None, [], None
    for step in (1, 2):
        opt.zero_grad(set_to_none=True)
        logits = forward(model, ids_t, pos_t, mask)
        loss, per_seq = batch_loss(logits, seqs)
        loss.backward()
        if step == 1:
            diff = float((logits.detach() - packed_logits).abs().max())
            assert diff < 1e-5, diff  # train-mode forward with grad == the no-grad one
            fixture_logits = []
            for p in LOGIT_POSITIONS:
                row = logits[p].detach()
                top = torch.topk(row, N_TOP)
                fixture_logits.append({
                    "position": p,
                    "top": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
                    "sample": [[i, float(row[i])] for i in SAMPLE_IDS],
                })
            loss_rec = {"value": float(loss.detach()), "per_target": [[float(x) for x in ce.detach()] for ce in per_seq]}
            global_norm = float(np.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params.values())))
            gp = {}
            for k, p in params.items():
                g = p.grad.detach()
                g64 = g.double()
                gp[k] = {
                    "shape": list(p.shape),
                    "sum": float(g64.sum()),
                    "abs_sum": float(g64.abs().sum()),
                    "indices": [int(i) for i in indices[k]],
                    "values": at(g, indices[k]),
                    "head": [float(x) for x in g.reshape(-1)[:N_HEAD]],
                    "init": at(initial[k], indices[k]),
                }
            grads = {"global_norm_f64": global_norm, "params": gp}
        clip_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP))
        if step == 1:
            grads["clip_returned_norm"] = clip_norm
        opt.step()
        steps.append({
            "step": step,
            "loss_before": float(loss.detach()),
            "clip_returned_norm": clip_norm,
            "params": {k: {"values": at(p, indices[k]),
                           "delta_sum": float((p.detach().double() - initial[k].double()).sum())}
                       for k, p in params.items()},
        })
        print(f"step {step}: loss before {float(loss.detach()):.6f}, pre-clip grad norm {clip_norm:.6f}")
    with torch.no_grad():
        loss_after = float(batch_loss(forward(model, ids_t, pos_t, mask), seqs)[0])
    print(f"loss after step 2: {loss_after:.6f}")
    assert loss_after < steps[1]["loss_before"] < steps[0]["loss_before"]

    fixture = {
        "_meta": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "model": args.model,
            "model_safetensors_sha256": sha256(os.path.join(args.model, "model.safetensors")),
            "attn_implementation": "eager",
            "dtype": "float32",
            "mask": "[1,1,T,T] additive float32: 0 allowed, finfo(float32).min elsewhere (causal, same sequence)",
            "packing_max_abs_diff": pack_diff,
            "packing_tolerance": PACKING_TOL,
            "unpacked_max_abs_diff": unpacked_diff,
            "unrestarted_positions_max_abs_diff": unrestarted_diff,
            "optimizer": "torch.optim.AdamW",
            "lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
            "clip_max_norm": CLIP,
            "threads": THREADS,
            "seed_torch": 0,
            "wall_seconds": round(time.time() - start, 2),
        },
        "batch": {
            "seed": SEED,
            "vocab": VOCAB,
            "sequences": seqs,
            "packed": {"input_ids": packed_ids, "position_ids": packed_pos},
            "n_targets": sum(len(s["targets"]) for s in seqs),
        },
        "loss": loss_rec,
        "logits": fixture_logits,
        "grads": grads,
        "steps": steps,
        "loss_after": loss_after,
    }
    os.makedirs(os.path.dirname(args.fixture), exist_ok=True)
    tmp = args.fixture + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.fixture)
    print(f"wrote {args.fixture} ({os.path.getsize(args.fixture)} bytes, {names[0]} .. {names[-1]}, {len(names)} parameters)")


if __name__ == "__main__":
    main()
