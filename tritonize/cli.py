"""The ``tritonize`` command: export, serve, predict.

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
from typing import List, Optional, Sequence

from tritonize import protocol

DEFAULT_REPOSITORY = Path("model_repository")


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"tritonize: error: {message}\n")
    return code


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritonize",
        description="Export fine-tuned encoders as Triton ensembles, serve them, query them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="export a checkpoint into a Triton model repository")
    export.add_argument("checkpoint", help="checkpoint directory or Hugging Face hub id")
    export.add_argument("--task", required=True, choices=list(protocol.TASKS),
                        help="the transformers pipeline task")
    export.add_argument("--name", required=True, help="model name in the repository (the ensemble)")
    export.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                        help="model repository directory (default: model_repository)")
    export.add_argument("--backend", default="python-onnxruntime",
                        help="encoder format: python-onnxruntime (default, runs locally) or onnxruntime "
                             "(native ORT backend of the NGC container)")
    export.add_argument("--max-batch-size", type=_positive, default=32)
    export.add_argument("--instances", type=_positive, default=1, help="instances of tokenizer and encoder")
    export.add_argument("--max-length", type=_positive, default=None,
                        help="truncate at this many tokens (default: the model's maximum)")
    export.add_argument("--atol", type=float, default=1e-4,
                        help="largest accepted |ONNX - PyTorch| on the validation texts (default 1e-4)")
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

    serve = commands.add_parser("serve", help="run tritonserver on a repository until Ctrl-C")
    serve.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--ready-timeout", type=float, default=180.0,
                       help="seconds to wait for every model to load (default 180)")
    serve.add_argument("--log-verbose", type=int, default=0)

    predict = commands.add_parser("predict", help="query a served model and print JSON")
    predict.add_argument("model", help="the model (ensemble) name")
    predict.add_argument("texts", nargs="+",
                         help="texts to send; for question-answering: QUESTION CONTEXT [QUESTION CONTEXT ...]")
    predict.add_argument("--url", default="localhost:8001", help="gRPC address (default localhost:8001)")
    predict.add_argument("--top-k", type=_positive, default=None, help="classification: best k labels")
    predict.add_argument("--aggregation-strategy", choices=list(protocol.AGGREGATION_STRATEGIES), default=None,
                         help="token-classification: override the model's default aggregation")
    predict.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    return parser


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
        task_options={
            key: value
            for key, value in (
                ("aggregation_strategy", args.aggregation_strategy), ("stride", args.stride),
                ("max_seq_len", args.max_seq_len), ("doc_stride", args.doc_stride),
                ("max_question_len", args.max_question_len), ("max_answer_len", args.max_answer_len),
            )
            if value is not None
        },
    )
    try:
        result = export(options)
    except ExportError as exc:
        return _fail(str(exc))
    print(summary(result))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tritonize.deploy.local import LocalServer, ServerError

    server = LocalServer(
        args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        ready_timeout=args.ready_timeout,
        log_verbose=args.log_verbose,
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
        "Ctrl-C to stop\n"
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

    try:
        with Client(args.url) as client:
            task = client.model_info(args.model).task
            if task == protocol.TEXT_CLASSIFICATION:
                results = client.classify(args.model, list(args.texts), top_k=args.top_k, timeout=args.timeout)
            elif task == protocol.TOKEN_CLASSIFICATION:
                results = client.extract_entities(
                    args.model, list(args.texts), aggregation_strategy=args.aggregation_strategy,
                    timeout=args.timeout,
                )
            elif task == protocol.QUESTION_ANSWERING:
                if len(args.texts) % 2:
                    return _fail("question-answering takes pairs: QUESTION CONTEXT [QUESTION CONTEXT ...]")
                answers = client.answer(
                    args.model, question=list(args.texts[0::2]), context=list(args.texts[1::2]),
                    top_k=args.top_k or 1, timeout=args.timeout,
                )
                printed = [
                    [a.to_dict() for a in r] if isinstance(r, list) else (r.to_dict() if r else None)
                    for r in answers
                ]
                print(json.dumps(printed if len(printed) > 1 else printed[0], indent=2, ensure_ascii=False))
                return 0
            else:
                return _fail(f"model {args.model!r} serves {task!r}, which this version cannot predict")
    except TritonizeError as exc:
        return _fail(str(exc), code=1)
    output = [[r.to_dict() for r in per_text] for per_text in results]
    print(json.dumps(output if len(output) > 1 else output[0], indent=2, ensure_ascii=False))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    handlers = {"export": _export, "serve": _serve, "predict": _predict}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
