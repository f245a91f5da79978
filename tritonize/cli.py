"""The ``tritonize`` command: export, serve, predict, loadtest.

Each subcommand imports its wing lazily, so ``tritonize predict`` works on the
base install (the SDK) and never loads torch.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from tritonize import protocol, tasks

DEFAULT_REPOSITORY = Path("model_repository")


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"tritonize: error: {message}\n")
    return code


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _assignment(text: str) -> tuple:
    """``KEY=VALUE``, the value read as JSON when it is JSON (3, true, ["a"]), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritonize",
        description="Export fine-tuned encoders as Triton ensembles, serve them, query them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="export a checkpoint into a Triton model repository")
    export.add_argument("checkpoint", help="checkpoint directory or Hugging Face hub id")
    installed = tasks.definitions()
    export.add_argument("--task", required=True, choices=list(installed),
                        help="the transformers pipeline task; installed task plugins: " + "; ".join(
                            f"{name} ({d.summary})" if d.summary else name for name, d in installed.items()))
    export.add_argument("--option", action="append", type=_assignment, default=[], metavar="KEY=VALUE",
                        help="an option of the task plugin (repeatable; the value is JSON or a string), "
                             "as the plugin's documentation names them")
    export.add_argument("--name", required=True, help="model name in the repository (the ensemble)")
    export.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                        help="model repository directory (default: model_repository)")
    export.add_argument("--backend", default="python-onnxruntime",
                        help="encoder format: python-onnxruntime (default: ONNX Runtime in the Python backend, "
                             "runs locally, CPU or CUDA), onnxruntime (Triton's native ORT backend, NGC container) "
                             "or tensorrt (a TensorRT engine that `tritonize build-engines` builds on the GPU)")
    export.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N",
                        help="where the encoder runs: KIND_CPU or KIND_GPU instance groups (default cpu). A host "
                             "without a GPU refuses to load a cuda model; nothing falls back to the CPU")
    export.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                        help="fp16 (GPUs): optimum's O4 graph behind the accuracy gate, run on the GPU at export; "
                             "with --backend tensorrt or --trt-accelerator, TensorRT's fp16 kernels")
    export.add_argument("--trt-accelerator", action="store_true",
                        help="--backend onnxruntime on a GPU: ONNX Runtime's TensorRT execution provider "
                             "(optimization.execution_accelerators)")
    export.add_argument("--max-batch-size", type=_positive, default=32)
    export.add_argument("--instances", type=_positive, default=1,
                        help="instances of each step (tokenizer, encoder, postprocess); default 1")
    export.add_argument("--max-length", type=_positive, default=None,
                        help="truncate at this many tokens (default: the model's maximum)")
    export.add_argument("--atol", type=float, default=1e-4,
                        help="largest accepted |ONNX - PyTorch| on the validation texts (default 1e-4)")
    speed = export.add_argument_group(
        "graph and threads (a graph other than the plain fp32 export ships only if it passes the accuracy gate)")
    speed.add_argument("--layout", choices=list(protocol.LAYOUTS), default=None,
                       help="fused: tokenizer, encoder and postprocess in one Python stub, two IPC hops fewer "
                            "per request; steps: three step models (default: fused where the backend can)")
    speed.add_argument("--optimize", default=None, metavar="O1|O2|O3",
                       help="fuse the graph with optimum's ORTOptimizer at this level (O4/fp16 is for GPUs)")
    speed.add_argument("--quantize", default=None, metavar="int8",
                       help="dynamic int8 with optimum's ORTQuantizer; the recipes of --int8-recipe are "
                            "tried in that order and the first that passes the gate is served")
    speed.add_argument("--quantize-for", default=None, metavar="avx2|avx512|avx512_vnni|arm64",
                       help="the CPU the int8 graph is built for (default: this machine's)")
    speed.add_argument("--int8-recipe", default=None,
                       metavar="per-channel|ffn-output-fp32|reduce-range|edge-layers-fp32|ffn-input-only",
                       help="try only this int8 recipe (default: each in that order, the first that passes "
                            "the gate is served)")
    speed.add_argument("--eval-texts", type=Path, default=None, metavar="FILE",
                       help="the gate's inputs: one text per line, or JSON Lines with \"text\" (or \"question\" "
                            "and \"context\"); default: a built-in set of 100 texts / 100 pairs")
    speed.add_argument("--min-agreement", type=float, default=0.99,
                       help="share of evaluation inputs that must get the pipeline's answer (top label; "
                            "entity_group, start, end; answer, start, end); below it nothing is written "
                            "(default 0.99)")
    speed.add_argument("--threads", type=_positive, default=None,
                       help="ONNX Runtime intra-op threads per encoder instance (default: the cores divided "
                            "among the encoder instances, at load time)")
    speed.add_argument("--spin", choices=["on", "off"], default="on",
                       help="ONNX Runtime's threads spin-wait between the operators of a run and a little "
                            "after it (default: on, measured faster here; off gives the cores back sooner)")
    limits = export.add_argument_group("limits and queues (past a limit a request is refused with INVALID_ARG)")
    limits.add_argument("--max-text-chars", type=_natural, default=100_000,
                        help="characters per text (question and context alike); 0: no limit (default 100000)")
    limits.add_argument("--max-windows", type=_natural, default=256,
                        help="token-classification and question-answering: windows per text or per pair; "
                             "0: no limit (default 256)")
    limits.add_argument("--max-batch-tokens", type=_natural, default=None,
                        help="padded tokens per encoder run; rows are sorted by length and cut into sub-batches "
                             "of at most this many (default: 512 on a CPU, 16384 on a GPU, never below the max length; 0: no budget)")
    limits.add_argument("--max-queue-size", type=_natural, default=256,
                        help="requests each step may queue; past it a request is refused with UNAVAILABLE, "
                             "which the SDK retries (default 256; 0: unbounded)")
    limits.add_argument("--queue-timeout-ms", type=float, default=0.0,
                        help="a request queued longer than this at a step is refused (default 0: no timeout)")
    ner = export.add_argument_group("token-classification")
    ner.add_argument("--aggregation-strategy", choices=list(protocol.AGGREGATION_STRATEGIES), default=None,
                     help="default entity aggregation, as the pipeline's (default: simple); "
                          "requests may override it")
    qa = export.add_argument_group("question-answering")
    qa.add_argument("--max-seq-len", type=_positive, default=None, help="tokens per window (default 384)")
    qa.add_argument("--doc-stride", type=int, default=None, help="overlap between windows (default 128)")
    qa.add_argument("--max-question-len", type=_positive, default=None,
                    help="longest question in tokens; longer ones are refused (default 64)")
    qa.add_argument("--max-answer-len", type=_positive, default=None, help="longest answer in tokens (default 15)")
    ner.add_argument("--stride", type=int, default=None,
                     help="overlap in tokens between the windows of a long text (default: min(128, max length/4))")
    mask = export.add_argument_group("fill-mask")
    mask.add_argument("--top-k", type=_positive, default=None,
                      help="predictions per mask token, as the pipeline's (default 5); requests may override it")
    embed = export.add_argument_group("feature-extraction (sentence embeddings)")
    embed.add_argument("--pooling", choices=["cls", "mean"], default=None,
                       help="default: as the checkpoint's sentence-transformers 1_Pooling/config.json says, else mean")
    embed.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalise the vectors (default: whether modules.json has a Normalize module); "
                            "requests may override it")

    engines = commands.add_parser(
        "build-engines", help="build the TensorRT engine of every tensorrt_plan model, on this GPU")
    engines.add_argument("repository", type=Path, help="the model repository (as mounted on the GPU host)")
    engines.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    engines.add_argument("--force", action="store_true", help="rebuild engines that are up to date")
    engines.add_argument("--dry-run", action="store_true",
                         help="print the equivalent trtexec commands and build nothing")

    serve = commands.add_parser("serve", help="run tritonserver on a repository until Ctrl-C")
    serve.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--ready-timeout", type=float, default=180.0,
                       help="seconds to wait for every model to load (default 180)")
    serve.add_argument("--log-verbose", type=int, default=0)
    serve.add_argument("--no-heal", action="store_true",
                       help="do not watch the Python-backend stubs: a model whose stub dies (out of memory, "
                            "killed) then fails every request until the server restarts")
    serve.add_argument("--probe-interval", type=_positive_seconds, default=1.0,
                       help="seconds between two looks at the stubs (in /proc; no request is sent). "
                            "A model whose stub died is reloaded (default 1.0)")

    threads = serve.add_argument_group("threads (for every model served; default: what each export says)")
    threads.add_argument("--threads", type=_positive, default=None,
                         help="ONNX Runtime intra-op threads per encoder instance (default: the export's "
                              "--threads, else the cores divided among the encoder instances)")
    threads.add_argument("--spin", choices=["on", "off"], default=None,
                         help="ONNX Runtime thread spinning (default: the export's, on)")
    threads.add_argument("--tokenizers-parallelism", action="store_true",
                         help="let the tokenizer steps' Rust tokenizer use its own threads "
                              "(TOKENIZERS_PARALLELISM=true; default false: the encoder has the cores)")

    predict = commands.add_parser("predict", help="query a served model and print JSON")
    predict.add_argument("model", help="the model (ensemble) name")
    predict.add_argument("texts", nargs="+",
                         help="texts to send, grouped by the task's inputs: for question-answering "
                              "QUESTION CONTEXT [QUESTION CONTEXT ...]; see --inputs")
    predict.add_argument("--inputs", default=None, metavar="NAME,NAME",
                         help="which inputs the texts fill, in groups, e.g. text,text_pair for sentence pairs "
                              "(default: the task's required inputs)")
    predict.add_argument("--param", action="append", type=_assignment, default=[], metavar="KEY=VALUE",
                         help="a parameter of the task's call (repeatable; JSON or a string), e.g. top_k=3")
    predict.add_argument("--url", default="localhost:8001",
                         help="Triton gRPC address, or several comma-separated (h1:8001,h2:8001), or dns:///NAME:PORT for every address a name resolves to (default localhost:8001)")
    predict.add_argument("--top-k", type=_positive, default=None, help="classification: best k labels")
    predict.add_argument("--aggregation-strategy", choices=list(protocol.AGGREGATION_STRATEGIES), default=None,
                         help="token-classification: override the model's default aggregation")
    predict.add_argument("--timeout", type=float, default=30.0, help="seconds per call")

    deploy = commands.add_parser("deploy", help="write what runs a model repository elsewhere (Kubernetes)")
    kube = deploy.add_subparsers(dest="target", required=True).add_parser(
        "kubernetes", help="a Kustomize tree: tritonserver Deployment, Service, HPA on queue time, Prometheus config",
        description="Copy deploy/kubernetes (base + the cpu or gpu overlay) into --out and write the "
                    "kustomization.yaml that makes it this deployment's; then: kubectl apply -k OUT.")
    kube.add_argument("--repository", required=True, metavar="URI",
                      help="pvc://CLAIM/PATH, s3://BUCKET/PATH, gs://BUCKET/PATH, as://ACCOUNT/CONTAINER/PATH, "
                           "or an absolute path inside the image")
    kube.add_argument("--name", required=True, help="prefix of every object (NAME-triton): a DNS label")
    kube.add_argument("--out", required=True, type=Path, help="directory to write: new or empty")
    kube.add_argument("--gpu", action="store_true",
                      help="the gpu overlay: one nvidia.com/gpu per pod on GPU nodes (export with --device cuda)")
    kube.add_argument("--image", default=None, help="tritonserver image (default tritonize-triton:latest)")
    kube.add_argument("--replicas", type=_positive, default=1, help="fewest pods: the autoscaler's minimum")
    kube.add_argument("--max-replicas", type=_positive, default=None, help="most pods (default max(4, --replicas))")
    kube.add_argument("--namespace", default=None, help="namespace of every object (default: kubectl's)")
    kube.add_argument("--credentials-secret", default=None,
                      help="object storage: the Secret with its keys (default tritonize-storage-credentials; "
                           "'' for none: IRSA, Workload Identity)")
    kube.add_argument("--prometheus-operator", action="store_true",
                      help="also a ServiceMonitor on the Service (a Prometheus Operator CRD)")
    kube.add_argument("--tensorrt", action="store_true",
                      help="with --gpu and a pvc:// repository: an init container copies the repository and runs "
                           "`tritonize build-engines` on the pod's GPU (models exported with --backend tensorrt)")
    kube.add_argument("--force", action="store_true", help="replace what an earlier run wrote into --out")
    _add_loadtest_parser(commands)
    _add_tune_parser(commands)
    return parser


def _add_tune_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    tune = commands.add_parser(
        "tune", help="search the ensemble's serving knobs for the highest throughput that meets an SLA")
    tune.add_argument("repository", type=Path, help="the model repository")
    tune.add_argument("--model", required=True, help="the ensemble to tune")
    tune.add_argument("--sla", type=Path, required=True, help="SLA file, as for `tritonize loadtest`")
    tune.add_argument("--budget", type=_duration, default=600.0, help="time to spend, e.g. 10m (default 10m)")
    tune.add_argument("--concurrency", default="1,4,16,64",
                      help="concurrent users, in rising order until the SLA breaks (default 1,4,16,64)")
    tune.add_argument("--inputs", type=Path, default=None, help="inputs file, as `tritonize loadtest --data`")
    tune.add_argument("--seconds", type=_duration, default=8.0, help="measured seconds per load (default 8)")
    tune.add_argument("--warmup", type=_duration, default=2.0, help="unmeasured seconds before each (default 2)")
    tune.add_argument("--graphs", default="", metavar="O2,int8,...",
                      help="also try these graph variants, exported from --checkpoint behind the accuracy gate")
    tune.add_argument("--checkpoint", default=None, help="the checkpoint the model was exported from (--graphs)")
    tune.add_argument("--url", default=None,
                      help="tune on this running server (gRPC address; explicit model-control mode, serving "
                           "REPOSITORY) instead of a local one")
    tune.add_argument("--http-url", default=None, help="with --url: its HTTP address (default: the gRPC port - 1)")
    tune.add_argument("--metrics-url", default=None,
                      help="with --url: its metrics endpoint (default: found as `tritonize loadtest` finds it)")
    tune.add_argument("--out", type=Path, default=Path("tune-report"),
                      help="where the CSV and the plot go (default tune-report)")
    tune.add_argument("--apply", action="store_true",
                      help="write the winner's configs into the repository (atomically), with what was measured")


def _tune(args: argparse.Namespace) -> int:
    from tritonize.loadtest import tune
    from tritonize.loadtest.sla import SlaError

    try:
        options = tune.TuneOptions(
            repository=args.repository, model=args.model, sla=args.sla, budget=args.budget,
            concurrency=tune.parse_concurrency(args.concurrency), inputs=args.inputs, apply=args.apply,
            url=args.url, http_url=args.http_url, metrics_url=args.metrics_url, out=args.out,
            seconds=args.seconds, warmup=args.warmup, checkpoint=args.checkpoint,
            graphs=tuple(g for g in args.graphs.split(",") if g),
        )
        result = tune.tune(options)
    except (tune.TuneError, SlaError) as exc:
        return _fail(str(exc))
    if result.winner is None:
        return 1
    if args.apply:
        print(f"applied: {result.winner.knobs.label()} into {args.repository}")
    print(json.dumps({"winner": result.winner.knobs.as_dict(), "throughput_rps": round(result.winner.score, 2),
                      "baseline_rps": round(result.baseline.score, 2),
                      "gain": round(result.gain, 3) if result.gain else None,
                      "candidates": len(result.candidates), "confirmed": result.confirmed,
                      "interrupted": result.interrupted}))
    return 130 if result.interrupted else 0


def _duration(text: str) -> float:
    from tritonize.loadtest.plan import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_loadtest_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    loadtest = commands.add_parser(
        "loadtest", help="Locust load test of served models through the SDK, with an SLA gate",
        description="Run Locust headless against served tritonize models (one SDK call per request) and "
                    "check the result against an SLA file. Exit code: 0 SLA met, 1 SLA breached (or, without "
                    "--sla, failed requests), 2 could not run. See loadtest/README.md.",
    )
    loadtest.add_argument("--host", default="localhost:8001",
                          help="Triton gRPC address, or several comma-separated (h1:8001,h2:8001), or dns:///NAME:PORT for every address a name resolves to (default localhost:8001)")
    loadtest.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                          help="ensembles to call (default: every tritonize model the server serves)")
    loadtest.add_argument("--sla", type=Path, default=None, help="SLA file (YAML): limits per request name")
    loadtest.add_argument("--users", "-u", type=_positive, default=10, help="simulated users (default 10)")
    loadtest.add_argument("--spawn-rate", "-r", type=float, default=10.0, help="users started per second")
    loadtest.add_argument("--run-time", "-t", type=_duration, default=60.0,
                          help="how long the load runs, warm-up included: 30s, 2m, 1m30s (default 60s)")
    loadtest.add_argument("--warmup", type=_duration, default=0.0,
                          help="first part of the run not measured: Locust's stats are reset when it ends "
                               "(default 0s)")
    loadtest.add_argument("--pacing", choices=["open", "closed"], default="closed",
                          help="open: each user sends --rps-per-user requests/s (constant_throughput); "
                               "closed: each user waits --think-time after each answer (between). Default closed")
    loadtest.add_argument("--rps-per-user", type=float, default=1.0, help="open pacing: requests/s per user")
    loadtest.add_argument("--think-time", default="0.1-0.5",
                          help="closed pacing: seconds between a user's requests, S or MIN-MAX (default 0.1-0.5)")
    loadtest.add_argument("--weights", default=None,
                          help="share of users per task, e.g. classification=3,ner=1,qa=1 (default equal)")
    loadtest.add_argument("--data", type=Path, default=None,
                          help="inputs: JSONL or CSV with 'text' or 'question'+'context' columns "
                               "(default: built-in samples of short, medium and long texts)")
    loadtest.add_argument("--csv", dest="csv_dir", type=Path, default=None,
                          help="write Locust's CSVs, triton_breakdown.csv, sla.csv and summary.json into DIR")
    loadtest.add_argument("--html", type=Path, default=None,
                          help="write Locust's HTML report, with Triton's breakdown appended, to FILE")
    loadtest.add_argument("--metrics-url", default=None,
                          help="Triton's metrics endpoint(s), comma-separated (default: $TRITONIZE_METRICS_URL, "
                               "else found per server)")
    loadtest.add_argument("--timeout", type=float, default=10.0, help="deadline of one SDK call, seconds")
    loadtest.add_argument("--attempts", type=_positive, default=1,
                          help="SDK attempts per call on UNAVAILABLE/RESOURCE_EXHAUSTED (default 1: no retry)")
    loadtest.add_argument("--stop-timeout", type=_duration, default=15.0,
                          help="at the end, how long running requests may take to finish (default 15s)")
    loadtest.add_argument("--seed", type=int, default=0, help="seed of the input and model choice")
    loadtest.add_argument("--connect-timeout", type=_duration, default=5.0,
                          help="how long to wait for the Triton server to answer at the start (default 5s)")
    loadtest.add_argument("--loglevel", default="WARNING", help="Locust's log level (default WARNING)")
    distributed = loadtest.add_argument_group("distributed (Locust's master/worker mode)")
    distributed.add_argument("--master", action="store_true", help="run as the master: workers generate the load")
    distributed.add_argument("--worker", action="store_true", help="run as a worker of --master-host")
    distributed.add_argument("--expect-workers", type=_positive, default=1,
                             help="master: workers to wait for before starting (default 1)")
    distributed.add_argument("--expect-workers-timeout", type=_duration, default=60.0,
                             help="master: how long to wait for them; worker: how long to wait for the master "
                                  "(default 60s)")
    distributed.add_argument("--master-bind-host", default="*", help="master: interface to listen on (default all)")
    distributed.add_argument("--master-bind-port", type=int, default=5557, help="master: port (default 5557)")
    distributed.add_argument("--master-host", default="127.0.0.1", help="worker: the master's address")
    distributed.add_argument("--master-port", type=int, default=5557, help="worker: the master's port")


def _loadtest(args: argparse.Namespace) -> int:
    from tritonize.loadtest.plan import LoadTestOptions, parse_think_time, parse_weights

    try:
        think_time = parse_think_time(args.think_time)
        weights = parse_weights(args.weights)
    except ValueError as exc:
        return _fail(str(exc))
    options = LoadTestOptions(
        host=args.host, models=args.models, data=args.data, sla=args.sla, users=args.users,
        spawn_rate=args.spawn_rate, run_time=args.run_time, warmup=args.warmup, pacing=args.pacing,
        rps_per_user=args.rps_per_user, think_time=think_time, weights=weights, csv_dir=args.csv_dir,
        html=args.html, metrics_url=args.metrics_url, timeout=args.timeout, attempts=args.attempts,
        stop_timeout=args.stop_timeout, seed=args.seed, connect_timeout=args.connect_timeout,
        master=args.master, worker=args.worker, master_host=args.master_host, master_port=args.master_port,
        master_bind_host=args.master_bind_host, master_bind_port=args.master_bind_port,
        expect_workers=args.expect_workers, expect_workers_timeout=args.expect_workers_timeout,
    )
    try:
        from tritonize.loadtest.run import run  # imports Locust: gevent monkey-patching starts here
    except ImportError as exc:
        return _fail(f"load testing needs the loadtest extra ({exc.name} is missing): "
                     "pip install 'tritonize[loadtest]'")
    return run(options, loglevel=args.loglevel.upper())


def _export(args: argparse.Namespace) -> int:
    from tritonize.exporters.checkpoint import ExportError
    from tritonize.exporters.export import ExportOptions, export, summary

    options = ExportOptions(
        checkpoint=args.checkpoint,
        task=args.task,
        name=args.name,
        repository=args.repository,
        backend=args.backend,
        max_batch_size=args.max_batch_size,
        instances=args.instances,
        max_length=args.max_length,
        atol=args.atol,
        max_text_chars=args.max_text_chars,
        max_windows=args.max_windows,
        max_batch_tokens=args.max_batch_tokens,
        max_queue_size=args.max_queue_size,
        queue_timeout_ms=args.queue_timeout_ms,
        optimize=args.optimize,
        quantize=args.quantize,
        quantize_for=args.quantize_for,
        int8_recipe=args.int8_recipe,
        eval_texts=args.eval_texts,
        min_agreement=args.min_agreement,
        threads=args.threads,
        allow_spinning=args.spin == "on",
        layout=args.layout,
        device=args.device,
        precision=args.precision,
        trt_accelerator=args.trt_accelerator,
        task_options={
            **dict(args.option),
            **{key: value
            for key, value in (
                ("aggregation_strategy", args.aggregation_strategy), ("stride", args.stride),
                ("max_seq_len", args.max_seq_len), ("doc_stride", args.doc_stride),
                ("max_question_len", args.max_question_len), ("max_answer_len", args.max_answer_len),
                ("top_k", args.top_k), ("pooling", args.pooling), ("normalize", args.normalize),
            )
            if value is not None},
        },
    )
    try:
        result = export(options)
    except ExportError as exc:
        return _fail(str(exc))
    print(summary(result))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from tritonize.deploy.local import LOGGER, LocalServer, ServerError

    # The stub monitor's lines (a model died, it was reloaded) go to stderr, beside the banner.
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(to_stderr)
    LOGGER.setLevel(logging.INFO)
    server = LocalServer(
        args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        ready_timeout=args.ready_timeout,
        log_verbose=args.log_verbose,
        heal=not args.no_heal,
        probe_interval=args.probe_interval,
        threads=args.threads,
        allow_spinning=None if args.spin is None else args.spin == "on",
        tokenizers_parallelism=args.tokenizers_parallelism,
    )
    # Ctrl-C, SIGINT from a supervisor (even when started in the background, where
    # SIGINT is inherited as ignored) and SIGTERM (docker stop, kill) all stop cleanly.
    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
    except ServerError as exc:
        return _fail(str(exc), code=1)
    except KeyboardInterrupt:
        server.stop()
        return 130
    models = sorted(p.name for p in server.repository.iterdir() if (p / "config.pbtxt").is_file())
    sys.stderr.write(
        f"tritonserver ready (pid {server.pid}): gRPC {server.grpc_url}, HTTP {server.http_url}, "
        f"metrics {server.metrics_url}\nmodels: {', '.join(models)}\nlog: {server.log_path}\n"
        + (f"healing: a model whose stub dies is reloaded (stubs probed every {args.probe_interval:g}s)\n"
           if not args.no_heal else "healing: off (--no-heal)\n")
        + "Ctrl-C to stop\n"
    )
    try:
        while server.is_running():
            time.sleep(0.5)
        sys.stderr.write(f"tritonserver exited unexpectedly:\n{server.log_excerpt()}\n")
        server.stop()
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("stopping tritonserver ...\n")
        server.stop()
        return 0


def _predict(args: argparse.Namespace) -> int:
    from tritonize.client import Client, TritonizeError
    from tritonize.client.tasks import codec_for

    try:
        client = Client(args.url)
    except ValueError as exc:
        return _fail(f"--url {args.url!r}: {exc}")
    try:
        with client:
            info = client.model_info(args.model, timeout=args.timeout)
            if not info.task:
                return _fail(f"model {args.model!r} is not a tritonize model (no {protocol.PARAM_TASK} parameter)")
            try:
                definition = tasks.get(info.task)
            except tasks.UnknownTask as exc:
                return _fail(f"model {args.model!r} serves {info.task!r}: {exc}")
            keywords = [k.strip() for k in args.inputs.split(",")] if args.inputs else list(definition.required_keywords)
            unknown = [k for k in keywords if k not in definition.keywords]
            if unknown or not keywords:
                return _fail(f"--inputs {args.inputs!r}: {info.task} takes {', '.join(definition.keywords)}")
            if len(args.texts) % len(keywords):
                return _fail(f"{info.task} takes the texts in groups of {len(keywords)}: "
                             + " ".join(k.upper() for k in keywords) + " [...]")
            arguments = {key: list(args.texts[i::len(keywords)]) for i, key in enumerate(keywords)}
            parameters = dict(args.param)
            if args.top_k is not None:
                parameters.setdefault("top_k", args.top_k)
            if args.aggregation_strategy is not None:
                parameters.setdefault("aggregation_strategy", args.aggregation_strategy)
            results = client.predict(args.model, timeout=args.timeout, **arguments, **parameters)
            printed = [codec_for(info.task).to_json(result) for result in results]
    except TritonizeError as exc:
        return _fail(str(exc), code=1)
    print(json.dumps(printed if len(printed) > 1 else printed[0], indent=2, ensure_ascii=False))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from tritonize.deploy import k8s  # the standard library only

    options = dict(gpu=args.gpu, image=args.image, replicas=args.replicas, max_replicas=args.max_replicas,
                   namespace=args.namespace, prometheus_operator=args.prometheus_operator, tensorrt=args.tensorrt,
                   credentials_secret=k8s.DEFAULT_CREDENTIALS_SECRET
                   if args.credentials_secret is None else args.credentials_secret)
    try:
        plan = k8s.plan_kubernetes(args.repository, args.name, **options)
        written = k8s.write_kubernetes(plan, args.out, force=args.force)
    except k8s.KubernetesError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"could not write {args.out}: {exc}", code=1)
    print(k8s.describe(plan, args.out, written))
    return 0


def _build_engines(args: argparse.Namespace) -> int:
    from tritonize.exporters.checkpoint import ExportError
    from tritonize.exporters.engines import build_engines

    try:
        built = build_engines(args.repository, args.model or None, force=args.force, dry_run=args.dry_run)
    except ExportError as exc:
        return _fail(str(exc))
    if not args.dry_run:
        print(f"built {len(built)} engine(s) in {args.repository}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    handlers = {"export": _export, "serve": _serve, "predict": _predict, "loadtest": _loadtest, "deploy": _deploy,
                "build-engines": _build_engines, "tune": _tune}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
