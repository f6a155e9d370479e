#!/usr/bin/env python3
"""How busy the teacher was during a run, from `labflow serve --access-log FILE`.

    python3 benches/busy.py ACCESS_LOG START END     # Unix seconds of the run's window

Prints one JSON object: `busy_fraction` = length of the union of the [start, end] intervals of
the teacher requests (`/v1/completions`, `/v1/chat/completions`) inside the window, clipped to
it, divided by the window's length; `requests`, `sequences` (prompts × n summed), token totals,
`max_in_flight` (most requests open at one instant) and `mean_sequences_open`: the sequences
(prompts × n) of the open requests, averaged over the window — an upper bound on the batch the
teacher could decode, since a batched request holds all its sequences until its last one ends.
"""

import json
import sys

TEACHER = ("/v1/completions", "/v1/chat/completions")


def union_length(intervals):
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def max_overlap(intervals):
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def busy(path, start, end):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    rows = [r for r in rows if r["endpoint"] in TEACHER and r["end"] >= start and r["start"] <= end]
    clipped = [(max(r["start"], start), min(r["end"], end)) for r in rows]
    window = end - start
    return {
        "window_seconds": round(window, 3),
        "busy_seconds": round(union_length(clipped), 3),
        "busy_fraction": round(union_length(clipped) / window, 4) if window > 0 else None,
        "requests": len(rows),
        "sequences": sum(r["prompts"] * r["n"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "errors": sum(1 for r in rows if r["status"] != 200),
        "max_in_flight": max_overlap(clipped),
        "mean_sequences_open": round(sum((b - a) * r["prompts"] * r["n"] for (a, b), r in zip(clipped, rows)) / window, 2) if window > 0 else None,
    }


def _self_test():
    assert union_length([(0, 2), (1, 3), (5, 6)]) == 4
    assert union_length([(0, 10), (1, 2)]) == 10
    assert max_overlap([(0, 2), (1, 3), (3, 4)]) == 2


if __name__ == "__main__":
    _self_test()
    print(json.dumps(busy(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))))
