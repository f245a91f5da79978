"""Threads, side by side in one run: ORT intra-op threads per instance, spinning, instances, tokenizer threads.

    .venv/bin/python benchmarks/threads.py [--variant int8] [--rounds 2] [--seconds 6]

Needs `make demo` to have run once (.cache/checkpoints/minilm-sentiment). It
exports the demo's sentiment classifier (``--quantize int8`` by default, gated
on the built-in evaluation set at --min-agreement 0.98) several ways into one
temporary repository and serves it twice: once as ``tritonize serve`` does
by default (``TOKENIZERS_PARALLELISM=false``), once with
``--tokenizers-parallelism``. Every configuration then gets the same tweets,
rounds interleaved: one caller (p50), 16 concurrent callers, lists of 32.

* ``1 x 2 threads``: one instance, ORT threads = cores / instances (the default), spinning on;
* ``1 x 2 threads, spin off``: the same, ``--spin off``;
* ``2 x 1 thread``: ``--instances 2``, so one thread each (the default division);
* ``2 x 2 threads``: ``--instances 2 --threads 2``: more threads than cores;
* ``1 x 2 threads, tokenizer threads``: the default export, served with ``--tokenizers-parallelism``.

For scale, the same rounds time ``pipeline("text-classification")`` one text
per call, and the ratio of each configuration's best to it is printed.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-sentiment"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

CONFIGS = {
    "1 x 2 threads": {},
    "1 x 2 threads, spin off": {"allow_spinning": False},
    "2 x 1 thread": {"instances": 2},
    "2 x 2 threads": {"instances": 2, "threads": 2},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["fp32", "int8"], default="int8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not (CHECKPOINT / "config.json").is_file():
        print("run `make demo` first: it builds the checkpoint", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from serving import CALLERS, Figure, Pipeline, concurrently, in_lists, interleaved, one_at_a_time, tweets
    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port
    from tritonize.exporters.export import ExportOptions, export

    texts = tweets(400, seed=3)
    graph = {"quantize": "int8", "min_agreement": 0.98} if args.variant == "int8" else {}
    with tempfile.TemporaryDirectory(prefix="tritonize-threads-") as tmp:
        repository = Path(tmp) / "repository"
        names = {}
        for index, (label, extra) in enumerate(CONFIGS.items()):
            names[label] = f"c{index}"
            export(ExportOptions(str(CHECKPOINT), "text-classification", names[label], repository,
                                 **graph, **extra), stream=io.StringIO())
        servers = [LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()),
                   LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                               tokenizers_parallelism=True)]
        with servers[0], servers[1]:
            systems: Dict[str, Callable[[], Figure]] = {}
            pools = []
            for label, server, model in [*((label, servers[0], names[label]) for label in CONFIGS),
                                         ("1 x 2 threads, tokenizer threads", servers[1], names["1 x 2 threads"])]:
                clients = [Client(server.grpc_url) for _ in range(CALLERS)]
                pools.extend(clients)
                one = clients[0]
                one.classify(model, texts[:32])  # warm-up
                calls = [lambda t, c=c, m=model: c.classify(m, t) for c in clients]
                systems[f"{label} | 1 caller"] = (
                    lambda one=one, model=model: one_at_a_time(lambda t: one.classify(model, t), texts, args.seconds))
                systems[f"{label} | {CALLERS} callers"] = (
                    lambda calls=calls: concurrently(iter(calls).__next__, texts, args.seconds))
                systems[f"{label} | lists of 32"] = (
                    lambda one=one, model=model: in_lists(lambda ts: one.classify(model, list(ts)), texts, args.seconds))
            pipe = Pipeline("text-classification", CHECKPOINT, {"truncation": True})
            pipe.one(texts[0])
            systems["pipeline | 1/call"] = lambda: one_at_a_time(pipe.one, texts, args.seconds)
            results = interleaved(systems, args.rounds)
            for client in pools:
                client.close()
    print(f"\n{args.variant} sentiment classifier, {len(os.sched_getaffinity(0))} cores; texts/s "
          f"(p50 ms at 1 caller), median of {args.rounds} rounds of {args.seconds:g} s\n")
    base = statistics.median(f.per_s for f in results["pipeline | 1/call"])
    print(f"pipeline(\"text-classification\"), 1 text per call: {base:.0f} texts/s\n")
    print(f"| configuration | 1 caller | {CALLERS} callers | lists of 32 | best / pipeline 1/call |")
    print("|---|---|---|---|---|")
    for label in [*CONFIGS, "1 x 2 threads, tokenizer threads"]:
        cells = []
        for how in ("1 caller", f"{CALLERS} callers", "lists of 32"):
            figures = results[f"{label} | {how}"]
            rate = statistics.median(f.per_s for f in figures)
            p50s = [f.p50_ms for f in figures if f.p50_ms is not None]
            cells.append(f"{rate:.0f}" + (f" ({statistics.median(p50s):.1f} ms)" if p50s else ""))
        best = max(statistics.median(f.per_s for f in results[f"{label} | {how}"])
                   for how in ("1 caller", f"{CALLERS} callers", "lists of 32"))
        print(f"| {label} | " + " | ".join(cells) + f" | {best / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
