"""ONNX Runtime memory settings for the encoder step: peak and final RSS, and speed.

    .venv/bin/python benchmarks/encoder_memory.py [--model model_repository/pii_encoder/1/model.onnx] [--runs 120]

Needs an exported encoder (``make demo`` writes model_repository/pii_encoder).
Each setting runs in a fresh process, in-process ONNX Runtime with the
encoder step's own session options, on the same sequence of batches the
token-budget scheduler forms under mixed load: batches of 1 to 64 rows of 8
to 512 tokens (at most ``--budget`` padded tokens each, seeded), interleaved
with a few big ones (the budget's worth, as a long text gives). It ends with
the speed of one run by budget (tokens/s for rows of 512 and of 128 tokens),
which is how the encoder's default budget on a CPU was chosen. It prints rows/s,
the RSS after warm-up, the peak RSS (VmHWM) and the RSS at the end:

* ``ort-defaults``: arena and memory patterns on (ONNX Runtime's defaults);
* ``no-mem-pattern``: arena on, memory patterns off (what the encoder step uses);
* ``arena-shrink``: arena on, patterns off, and the arena shrunk back after
  every run past half the budget (``memory.enable_memory_arena_shrinkage``);
* ``no-arena``: both off.

Settings alternate in rounds (``--rounds``) so that a noisy machine treats
them alike; the figures are the medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "ort-defaults": {"arena": True, "pattern": True, "shrink": False},
    "no-mem-pattern": {"arena": True, "pattern": False, "shrink": False},
    "arena-shrink": {"arena": True, "pattern": False, "shrink": True},
    "no-arena": {"arena": False, "pattern": False, "shrink": False},
}


def shapes(runs: int, budget: int, max_len: int, seed: int = 3):
    rng = random.Random(seed)
    out = []
    for i in range(runs):
        if i % 10 == 9:  # the budget's worth of full windows, as a long text gives
            out.append((budget // max_len, max_len))
        else:
            length = rng.choice([8, 16, 24, 40, 64, 96, 128, 200, 300, 384, 512])
            length = min(length, max_len)
            rows = rng.randint(1, max(1, min(64, budget // length)))
            out.append((rows, length))
    return out


def child(model: str, setting: str, runs: int, budget: int) -> dict:
    import time

    import numpy as np
    import onnxruntime as ort

    def rss(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = SETTINGS[setting]["arena"]
    options.enable_mem_pattern = SETTINGS[setting]["pattern"]
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    shrink = ort.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    names = [i.name for i in session.get_inputs()]
    meta = json.loads(os.environ.get("TRITONIZE_MAXLEN", "512"))
    plan = shapes(runs, budget, int(meta))
    rng = np.random.default_rng(0)

    def feed(rows: int, length: int) -> dict:
        ids = rng.integers(5, 100, size=(rows, length), dtype=np.int64)
        mask = np.ones((rows, length), dtype=np.int64)
        return {n: ids if n == "input_ids" else (mask if n == "attention_mask" else np.zeros_like(ids))
                for n in names}

    for rows, length in plan[:5]:  # warm-up
        session.run(None, feed(rows, length))
    warm = rss("VmRSS")
    started, done = time.perf_counter(), 0
    for rows, length in plan:
        big = SETTINGS[setting]["shrink"] and rows * length > budget // 2
        session.run(None, feed(rows, length), shrink if big else None)
        done += rows
    seconds = time.perf_counter() - started
    return {"rows_per_s": done / seconds, "warm_mb": warm, "peak_mb": rss("VmHWM"), "end_mb": rss("VmRSS")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fused = REPO_ROOT / "model_repository" / "pii_pipeline" / "1" / "model.onnx"
    parser.add_argument("--model", type=Path,
                        default=fused if fused.is_file() else REPO_ROOT / "model_repository" / "pii_encoder" / "1" / "model.onnx")
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=2048, help="the encoder step's default on a CPU")
    parser.add_argument("--max-length", type=int, default=None,
                        help="longest row (default: the encoder config's tritonize.max_positions, else 512)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "budgets":
        print(json.dumps(budgets(str(args.model))))
        return 0
    if args.child:
        print(json.dumps(child(str(args.model), args.child, args.runs, args.budget)))
        return 0
    if not args.model.is_file():
        print(f"{args.model} not found: run `make demo` first (or give --model)", file=sys.stderr)
        return 2
    max_length = args.max_length
    if max_length is None:
        config = args.model.parent.parent / "config.pbtxt"
        text = config.read_text() if config.is_file() else ""
        marker = 'key: "tritonize.max_positions"'
        max_length = int(text.split(marker)[1].split('"')[1]) if marker in text else 512
    env = dict(os.environ, TRITONIZE_MAXLEN=str(max_length))
    results = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name in SETTINGS:
            out = subprocess.run(
                [sys.executable, __file__, "--model", str(args.model), "--runs", str(args.runs),
                 "--budget", str(args.budget), "--child", name],
                capture_output=True, text=True, env=env, check=True,
            )
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1}/{args.rounds} {name}: {results[name][-1]}", flush=True)
    print(f"\n{args.model} ({args.runs} runs of up to {args.budget} padded tokens, rows of 8 to {max_length} "
          f"tokens; medians of {args.rounds} rounds)")
    print(f"{'setting':16} {'rows/s':>8} {'RSS warm MB':>12} {'peak MB':>8} {'end MB':>8}")
    speeds = json.loads(subprocess.run(
        [sys.executable, __file__, "--model", str(args.model), "--child", "budgets"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip().splitlines()[-1])
    base = statistics.median(r["rows_per_s"] for r in results["ort-defaults"])
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{name:16} {med['rows_per_s']:8.1f} {med['warm_mb']:12.0f} {med['peak_mb']:8.0f} "
              f"{med['end_mb']:8.0f}   speed {med['rows_per_s'] / base:.2f}x of ort-defaults")
    print("\nspeed of one run by budget (the encoder step's settings), tokens/s:")
    print(f"{'budget':>8} {'rows of 512':>12} {'rows of 128':>12}")
    for budget, by_length in speeds.items():
        print(f"{budget:>8} {by_length['512']:12.0f} {by_length['128']:12.0f}")
    return 0


def budgets(model: str) -> dict:
    import time

    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(0)
    out: dict = {}
    for budget in (1024, 2048, 4096, 8192, 16384):
        out[budget] = {}
        for length in (512, 128):
            rows = max(1, budget // length)
            ids = rng.integers(5, 100, size=(rows, length), dtype=np.int64)
            feed = {n: ids if n == "input_ids" else (np.ones_like(ids) if n == "attention_mask" else np.zeros_like(ids))
                    for n in names}
            session.run(None, feed)
            started, tokens = time.perf_counter(), 0
            while time.perf_counter() - started < 3:
                session.run(None, feed)
                tokens += rows * length
            out[budget][str(length)] = tokens / (time.perf_counter() - started)
    return out


if __name__ == "__main__":
    sys.exit(main())
