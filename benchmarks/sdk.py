"""What the SDK costs over raw tritonclient, and AsyncClient against threads.

    .venv/bin/python benchmarks/sdk.py [--calls 2000] [--concurrency 64]

Needs `make demo` to have run once (model_repository/sentiment). It starts its
own tritonserver on free ports, then:

1. overhead: the same one-text request, alternately through raw
   ``tritonclient.grpc`` (InferInput, infer, as_numpy) and through
   ``Client.classify``; reports both medians and their difference per call;
2. concurrency: the same number of one-text calls from 64 coroutines on one
   ``AsyncClient`` and from 64 threads on one ``Client``; reports calls/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = REPO_ROOT / "model_repository"
MODEL = "sentiment"
TEXT = "The ride was smooth and the app made it easy."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if not (REPOSITORY / MODEL / "config.pbtxt").is_file():
        print("run `make demo` first: it builds model_repository/sentiment", file=sys.stderr)
        return 2

    import tritonclient.grpc as grpcclient

    from tritonize.client import AsyncClient, Client
    from tritonize.deploy import LocalServer, free_port

    server = LocalServer(REPOSITORY, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with server, Client(server.grpc_url) as client:
        raw = grpcclient.InferenceServerClient(server.grpc_url)

        def raw_call() -> None:
            text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            text.set_data_from_numpy(np.array([[TEXT.encode("utf-8")]], dtype=np.object_))
            response = raw.infer(MODEL, [text], outputs=[grpcclient.InferRequestedOutput("LABELS"),
                                                         grpcclient.InferRequestedOutput("SCORES")])
            response.as_numpy("LABELS"), response.as_numpy("SCORES")

        def sdk_call() -> None:
            client.classify(MODEL, TEXT)

        for _ in range(100):  # warm-up both paths
            raw_call()
            sdk_call()
        raw_times, sdk_times = [], []
        for _ in range(args.calls):
            for call, times in ((raw_call, raw_times), (sdk_call, sdk_times)):
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
        raw_median, sdk_median = statistics.median(raw_times), statistics.median(sdk_times)
        print(f"{args.calls} calls each, alternating: raw tritonclient median {raw_median:.3f} ms, "
              f"tritonize Client median {sdk_median:.3f} ms, SDK overhead {sdk_median - raw_median:+.3f} ms per call")

        # client-side cost alone: building the request and reading the response, no network
        from tritonize.client import calls

        info = client.model_info(MODEL)
        labels = np.array([[b"positive", b"neutral", b"negative"]], dtype=np.object_)
        scores = np.array([[0.9, 0.07, 0.03]], dtype=np.float32)
        started = time.perf_counter()
        for _ in range(args.calls):
            plan = calls.classify(MODEL, TEXT, None, None).plan(info, server.grpc_url)
            for request in plan.requests:
                request.input_arrays()
            plan.finish([plan.decode(plan.requests[0], {"LABELS": labels, "SCORES": scores})])
        plan_us = (time.perf_counter() - started) / args.calls * 1e6
        print(f"SDK request building and result decoding alone: {plan_us:.0f} us per call")

        total = args.calls

        def thread_call(_: int) -> None:
            client.classify(MODEL, TEXT)

        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(thread_call, range(200)))  # warm-up
            started = time.perf_counter()
            list(pool.map(thread_call, range(total)))
            threads_rate = total / (time.perf_counter() - started)

        async def run_async() -> float:
            async with AsyncClient(server.grpc_url) as aclient:
                await aclient.classify(MODEL, TEXT)
                queue = list(range(total))

                async def worker() -> None:
                    while queue:
                        queue.pop()
                        await aclient.classify(MODEL, TEXT)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                return total / (time.perf_counter() - started)

        async_rate = asyncio.run(run_async())
        print(f"{total} one-text calls: {args.concurrency} threads on one Client {threads_rate:.0f} calls/s, "
              f"{args.concurrency} coroutines on one AsyncClient {async_rate:.0f} calls/s "
              f"({async_rate / threads_rate:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
