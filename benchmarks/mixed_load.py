"""Mixed load: short classification requests while long NER texts and long QA contexts are in flight.

    .venv/bin/python benchmarks/mixed_load.py [--rounds 3] [--seconds 30] [--short-callers 3] [--soak 0]

Needs `make demo` to have run once (it builds the three checkpoints in
.cache/checkpoints). In one run, with one tritonserver, it exports the demo's
three models twice into a temporary repository:

* ``before``: no token budget (``--max-batch-tokens 0``) and ONNX Runtime's own
  memory defaults (arena and memory patterns on): every row of a dynamic batch
  runs as one ONNX Runtime batch padded to its longest row, as before the
  scheduler;
* ``after``: the defaults of ``tritonize export`` (2,048-token budget on a CPU,
  rows sorted by length, early answers, memory patterns off);
* ``after-x2``: the same with ``--instances 2`` (two instances of every step:
  a short request finds one free while the other computes a long text).

All three are exported in the three-model layout (``--layout steps``), as when
these figures were first measured; ``benchmarks/serving.py`` compares the layouts.

Rounds alternate between the variants (this machine is shared and noisy, so only
figures of the same run are compared). In each round, ``--short-callers``
threads send one-tweet classification requests back to back, two threads
short PII texts (40 to 300 characters) to the same NER model that one more
thread sends long texts (40,000 characters), and one thread long QA contexts
(40,000 characters). It prints p50/p95/p99 per
request kind and variant, and the peak RSS (VmHWM) of every step's stub.

It then sends the largest request the defaults accept (a 100,000-character
text) to the NER and QA models of ``after``, timed, with the encoder stubs'
peak RSS after it.

``--soak SECONDS`` finally runs the same mixed load on ``after`` for that long
and samples every stub's RSS every 10 s: the README's "no upward trend" is the
mean and the max of the second half of those samples against the first.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO_ROOT / ".cache" / "checkpoints"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

LONG = 40_000  # characters of the long NER texts and QA contexts
VARIANTS = {
    "before": {"max_batch_tokens": 0, "ort_defaults": True, "instances": 1},
    "after": {"max_batch_tokens": None, "ort_defaults": False, "instances": 1},
    "after-x2": {"max_batch_tokens": None, "ort_defaults": False, "instances": 2},
}


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def stubs(server_pid: int) -> Dict[str, int]:
    """instance name -> pid of every Python-backend stub of the server."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), -1)
        if ppid == server_pid and argv and argv[0].endswith(b"triton_python_backend_stub") and len(argv) > 8:
            found[argv[8].decode()] = int(entry)
    return found


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def long_text(chars: int, seed: int) -> str:
    from data.pii_texts import PII_TEXTS

    rng = random.Random(seed)
    parts: List[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(rng.choice(PII_TEXTS))
    return " ".join(parts)[:chars]


def long_context(chars: int, seed: int) -> str:
    from qa import SENTENCES

    rng = random.Random(seed)
    ending = f" In the end the customer was charged ${rng.randint(100, 999)}.00 by Contoso Ltd."
    parts: List[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(rng.choice(SENTENCES).format(n=rng.randint(10, 9999)))
    return " ".join(parts)[: chars - len(ending)] + ending


def export_variants(repository: Path) -> None:
    from tritonize.exporters import configs
    from tritonize.exporters.export import ExportOptions, export

    models = [
        ("sentiment", "minilm-sentiment", "text-classification", {}),
        ("pii", "rampart-pii", "token-classification", {"aggregation_strategy": "first"}),
        ("qa", "minilm-qa", "question-answering", {}),
    ]
    log = io.StringIO()
    for variant, settings in VARIANTS.items():
        for name, checkpoint, task, task_options in models:
            export(
                ExportOptions(str(CHECKPOINTS / checkpoint), task, f"{name}-{variant}", repository,
                              max_batch_tokens=settings["max_batch_tokens"], instances=settings["instances"],
                              task_options=dict(task_options), layout="steps"),
                stream=log,
            )
            if settings["ort_defaults"]:  # ONNX Runtime's own memory settings, as before
                encoder_dir = repository / f"{name}-{variant}_encoder"
                config = configs.read_config(encoder_dir / "config.pbtxt")
                configs.set_parameters(config, {"tritonize.ort_defaults": "1"})
                configs.write_config(encoder_dir, config)
        print(f"exported sentiment/pii/qa-{variant}", flush=True)


class Load:
    """Closed-loop callers of one variant for ``seconds``: latencies per request kind."""

    def __init__(self, url: str, variant: str, tweets: List[str], short_callers: int) -> None:
        self.url, self.variant, self.tweets, self.short_callers = url, variant, tweets, short_callers
        self.latencies: Dict[str, List[float]] = {"classify": [], "ner-short": [], "ner-long": [], "qa-long": []}
        self.errors: Dict[str, int] = {kind: 0 for kind in self.latencies}

    def run(self, seconds: float) -> None:
        from tritonize.client import Client

        stop = time.monotonic() + seconds

        def loop(kind: str, call, seed: int) -> None:
            rng = random.Random(seed)
            with Client(self.url, timeout=120) as client:
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    try:
                        call(client, rng)
                    except Exception:  # noqa: BLE001 - counted, the run goes on
                        self.errors[kind] += 1
                        continue
                    self.latencies[kind].append((time.perf_counter() - started) * 1000)

        v = self.variant
        threads = [
            threading.Thread(target=loop, args=(
                "classify", lambda c, r: c.classify(f"sentiment-{v}", r.choice(self.tweets)), i))
            for i in range(self.short_callers)
        ]
        threads += [
            threading.Thread(target=loop, args=(
                "ner-short", lambda c, r: c.extract_entities(f"pii-{v}", long_text(r.randint(40, 300), r.random())),
                300 + i))
            for i in range(2)
        ]
        threads.append(threading.Thread(target=loop, args=(
            "ner-long", lambda c, r: c.extract_entities(f"pii-{v}", long_text(LONG, r.randint(0, 99))), 100)))
        threads.append(threading.Thread(target=loop, args=(
            "qa-long", lambda c, r: c.answer(f"qa-{v}", question="How much was the customer charged in the end?",
                                             context=long_context(LONG, r.randint(0, 99))), 200)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of one round of one variant")
    parser.add_argument("--short-callers", type=int, default=3)
    parser.add_argument("--soak", type=float, default=0.0, help="then a soak of this many seconds on 'after'")
    args = parser.parse_args()
    missing = [n for n in ("minilm-sentiment", "rampart-pii", "minilm-qa") if not (CHECKPOINTS / n).is_dir()]
    if missing:
        print(f"run `make demo` first: {', '.join(missing)} missing in {CHECKPOINTS}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from classification import tweets as load_tweets

    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    tweets = load_tweets(400)
    with tempfile.TemporaryDirectory(prefix="tritonize-mixed-") as tmp:
        repository = Path(tmp) / "model_repository"
        export_variants(repository)
        server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                             ready_timeout=600)
        with server:
            assert server.pid is not None
            loads = {v: Load(server.grpc_url, v, tweets, args.short_callers) for v in VARIANTS}
            for round_ in range(args.rounds):
                for variant in (list(VARIANTS) if round_ % 2 == 0 else list(reversed(list(VARIANTS)))):
                    print(f"round {round_ + 1}/{args.rounds}: {variant} ({args.seconds:.0f}s)", flush=True)
                    loads[variant].run(args.seconds)

            print(f"\nmixed load, {args.rounds} rounds x {args.seconds:.0f}s per variant; {args.short_callers} "
                  f"callers of one tweet, 2 callers of one short PII text (40-300 characters), 1 caller of "
                  f"{LONG:,}-character PII texts and 1 of {LONG:,}-character QA contexts")
            print(f"{'request':10} {'variant':8} {'calls':>6} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
            for kind in ("classify", "ner-short", "ner-long", "qa-long"):
                for variant in VARIANTS:
                    values = loads[variant].latencies[kind]
                    print(f"{kind:10} {variant:8} {len(values):6d} {loads[variant].errors[kind]:6d} "
                          f"{percentile(values, .5):9.1f} {percentile(values, .95):9.1f} "
                          f"{percentile(values, .99):9.1f}")
            running = stubs(server.pid)
            print("\npeak RSS (VmHWM) of each step's stub, MB:")
            print(f"{'model':12} {'step':12} " + " ".join(f"{v:>9}" for v in VARIANTS))
            for name in ("sentiment", "pii", "qa"):
                for step in ("tokenizer", "encoder", "postprocess"):
                    row = []
                    for variant in VARIANTS:
                        pids = [pid for inst, pid in running.items() if inst.startswith(f"{name}-{variant}_{step}_")]
                        row.append(max((memory_mb(pid, "VmHWM") for pid in pids), default=float("nan")))
                    print(f"{name:12} {step:12} " + " ".join(f"{v:9.0f}" for v in row))

            print("\nthe largest request the defaults accept (100,000 characters), on 'after':")
            with Client(server.grpc_url, timeout=600) as client:
                text = long_text(100_000, 5)
                started = time.perf_counter()
                entities = client.extract_entities("pii-after", text)
                ner_seconds = time.perf_counter() - started
                context = long_context(100_000, 5)
                started = time.perf_counter()
                answer = client.answer("qa-after", question="How much was the customer charged in the end?",
                                       context=context)
                qa_seconds = time.perf_counter() - started
            running = stubs(server.pid)
            print(f"  NER: {len(text):,} characters, {len(entities)} entities in {ner_seconds:.1f}s; "
                  f"pii-after_encoder peak RSS {memory_mb(running['pii-after_encoder_0_0'], 'VmHWM'):.0f} MB")
            print(f"  QA: {len(context):,} characters, answer {answer.answer!r} in {qa_seconds:.1f}s; "
                  f"qa-after_encoder peak RSS {memory_mb(running['qa-after_encoder_0_0'], 'VmHWM'):.0f} MB")

            if args.soak > 0:
                soak(server, tweets, args.soak, args.short_callers)
    return 0


def soak(server, tweets: List[str], seconds: float, short_callers: int) -> None:
    """The mixed load on 'after' for ``seconds``, every stub's RSS sampled every 10 s."""
    samples: List[tuple] = []
    load = Load(server.grpc_url, "after", tweets, short_callers)
    worker = threading.Thread(target=load.run, args=(seconds,))
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        running = {k: v for k, v in stubs(server.pid).items() if "-after_" in k}
        samples.append((time.monotonic() - started, {k: memory_mb(pid, "VmRSS") for k, pid in running.items()}))
        worker.join(timeout=10)
    print(f"\nsoak: {seconds:.0f}s of the mixed load on 'after' "
          f"({sum(len(v) for v in load.latencies.values())} calls, {sum(load.errors.values())} errors); "
          f"RSS of each stub, MB:")
    print(f"{'stub':32} {'first':>6} {'1st-half mean/max':>18} {'2nd-half mean/max':>18} {'last':>6}")
    for name in sorted(samples[-1][1]):
        series = [v for _, s in samples if name in s for v in [s[name]]]
        first, second = series[: len(series) // 2], series[len(series) // 2:]
        print(f"{name:32} {series[0]:6.0f} {sum(first) / len(first):9.0f}/{max(first):<8.0f} "
              f"{sum(second) / len(second):9.0f}/{max(second):<8.0f} {series[-1]:6.0f}")
    lat = load.latencies
    print("latencies during the soak: " + ", ".join(
        f"{kind} p50 {percentile(v, .5):.0f} ms / p95 {percentile(v, .95):.0f} ms" for kind, v in lat.items()))


if __name__ == "__main__":
    sys.exit(main())
