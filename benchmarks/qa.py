"""How the QA ensemble keeps its encoder busy when requests carry different numbers of windows.

    .venv/bin/python benchmarks/qa.py [--pairs 96] [--concurrency 32]

Needs `make demo` to have run once (it builds .cache/checkpoints/minilm-qa and
model_repository/qa). It starts its own tritonserver on free ports, builds
question/context pairs whose contexts span 1 to 8 windows of 384 tokens, and:

1. sends them one at a time from one caller (the encoder sees one pair's windows per call);
2. sends them from C concurrent callers, one pair per call: the dynamic batcher
   merges requests and the encoder step runs all their windows as one batch;
3. reports pairs/s and windows/s for both, the windows per encoder execution
   (from Triton's statistics), and checks that every concurrent answer equals
   the sequential one.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-qa"
REPOSITORY = REPO_ROOT / "model_repository"
MODEL = "qa"

SENTENCES = [
    "The customer wrote again about the delayed parcel and support replied within a day.",
    "Order ORD-{n:05d}-KX was packed in the Rotterdam warehouse and handed to the carrier.",
    "A refund of ${n}.00 was approved by the disputes team after review.",
    "The card ending in {n:04d} was used for a purchase at Northwind Traders.",
]


def pairs(count: int, seed: int = 11):
    rng = random.Random(seed)
    out = []
    for i in range(count):
        paragraphs = rng.choice([3, 30, 60, 120, 180, 240])  # ~1 to ~8 windows of 384 tokens
        body = " ".join(rng.choice(SENTENCES).format(n=rng.randint(10, 9999)) for _ in range(paragraphs))
        amount = f"${rng.randint(100, 5000)}.{rng.randint(0, 99):02d}"
        context = body + f" In the end the customer was charged {amount} by Contoso Ltd."
        out.append(("How much was the customer charged in the end?", context))
    return out


def encoder_step() -> str:
    """The model that runs the encoder: NAME_encoder (steps layout) or NAME_pipeline (fused, the default)."""
    return f"{MODEL}_encoder" if (REPOSITORY / f"{MODEL}_encoder").is_dir() else f"{MODEL}_pipeline"


def encoder_executions(raw) -> int:
    stats = raw.get_inference_statistics(encoder_step(), as_json=True)["model_stats"][0]
    return int(stats.get("execution_count", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if not (REPOSITORY / MODEL / "config.pbtxt").is_file() or not CHECKPOINT.is_dir():
        print("run `make demo` first: it builds the QA checkpoint and the repository", file=sys.stderr)
        return 2

    import tritonclient.grpc as grpcclient
    from transformers import AutoTokenizer

    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    work = pairs(args.pairs)
    windows = sum(
        len(tokenizer(q, c, truncation="only_second", max_length=384, stride=128,
                      return_overflowing_tokens=True)["input_ids"])
        for q, c in work
    )
    print(f"{len(work)} pairs, {windows} windows of up to 384 tokens "
          f"({windows / len(work):.1f} per pair on average)")

    server = LocalServer(REPOSITORY, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with server, Client(server.grpc_url, timeout=120) as client:
        raw = grpcclient.InferenceServerClient(server.grpc_url)
        for q, c in work[:4]:
            client.answer(MODEL, question=q, context=c)  # warm-up

        before = encoder_executions(raw)
        started = time.perf_counter()
        sequential = [client.answer(MODEL, question=q, context=c) for q, c in work]
        seconds = time.perf_counter() - started
        executions = encoder_executions(raw) - before
        print(f"1 caller, 1 pair per call: {len(work) / seconds:.1f} pairs/s, {windows / seconds:.0f} windows/s, "
              f"{windows / executions:.1f} windows per encoder execution")

        clients = [Client(server.grpc_url, timeout=120) for _ in range(args.concurrency)]
        before = encoder_executions(raw)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            concurrent = list(pool.map(
                lambda i: clients[i % args.concurrency].answer(MODEL, question=work[i][0], context=work[i][1]),
                range(len(work)),
            ))
        seconds = time.perf_counter() - started
        executions = encoder_executions(raw) - before
        for c in clients:
            c.close()
        print(f"{args.concurrency} callers, 1 pair per call: {len(work) / seconds:.1f} pairs/s, "
              f"{windows / seconds:.0f} windows/s, {windows / executions:.1f} windows per encoder execution")
        same = sum(a.answer == b.answer and a.start == b.start for a, b in zip(sequential, concurrent))
        print(f"concurrent answers identical to sequential ones: {same}/{len(work)}")
        correct = sum(a.answer == c.split("charged ")[-1].split(" by")[0] for a, (_, c) in zip(concurrent, work))
        print(f"answers equal to the charged amount (in the last window): {correct}/{len(work)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
