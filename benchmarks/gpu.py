"""GPU serving speed, side by side in one run: the pipeline on the GPU, in-process ONNX Runtime (CUDA EP) on
the served graph, and the served model (``--device cuda``), for a MiniLM-sized and a BERT-base-sized encoder.

    python benchmarks/gpu.py [--sizes minilm,bert-base] [--seconds 4] [--rounds 3] [--max-length 128]

Needs a GPU host with ``pip install -e '.[export,serve-gpu]'`` (torch with CUDA, onnxruntime-gpu, the
pip tritonserver of nvidia-pytriton). Nothing is downloaded: each model is a BertForSequenceClassification
of that size with seeded random weights and a WordPiece tokenizer trained here on the built-in evaluation
texts (speed does not depend on the weights' values). Sequences are at most ``--max-length`` (128) tokens.

What is missing is said and skipped, not faked: without onnxruntime-gpu there is no in-process ORT or
served figure; without tritonserver no served figure. It prints one table per size, with the GPU's name
and the date, for the README.

Systems (throughput in texts/s; p50 of one caller in ms):

* ``pipeline``: ``transformers.pipeline("text-classification", device=0)``, one text per call and
  ``batch_size=32``;
* ``in-process ORT``: the served ``model.onnx`` in an ONNX Runtime CUDA session in this process, fed by the
  served ``tokenizer.json``: one text per call and lists of 32 (no postprocess: conservative);
* ``served``: the SDK against the ensemble exported with ``--device cuda`` (fp32, and ``--precision fp16``
  behind the accuracy gate when it passes): one caller, 32 concurrent callers, lists of 32.
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from serving import Figure, concurrently, in_lists, interleaved, one_at_a_time  # noqa: E402

SIZES = {  # hidden, layers, heads, intermediate
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
}
CALLERS = 32
LIST = 32


def prerequisites() -> Dict[str, Optional[str]]:
    """What this host has; a value is None when present, else why not."""
    found: Dict[str, Optional[str]] = {}
    try:
        import torch

        found["torch-cuda"] = None if torch.cuda.is_available() else "torch.cuda.is_available() is False"
    except ImportError:
        found["torch-cuda"] = "torch is not installed"
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        found["ort-cuda"] = None if "CUDAExecutionProvider" in providers else f"onnxruntime has only {providers}"
    except ImportError:
        found["ort-cuda"] = "onnxruntime is not installed"
    try:
        from tritonize.deploy.local import TritonInstall, has_gpu

        TritonInstall.find()
        found["tritonserver"] = None if has_gpu() else "no /dev/nvidia*"
    except Exception as exc:  # noqa: BLE001 - reported
        found["tritonserver"] = f"no tritonserver: {exc}"
    return found


def texts() -> List[str]:
    from tritonize.exporters.eval_data import TEXTS

    return list(TEXTS)


def build_checkpoint(size: str, out: Path) -> Path:
    """A BERT classifier of ``size`` with seeded random weights and a WordPiece tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    hidden, layers, heads, intermediate = SIZES[size]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts() * 3, trainers.WordPieceTrainer(vocab_size=4000, special_tokens=specials))
    from tokenizers.processors import TemplateProcessing

    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, num_labels=3,
                        id2label={0: "negative", 1: "neutral", 2: "positive"},
                        label2id={"negative": 0, "neutral": 1, "positive": 2})
    BertForSequenceClassification(config).eval().save_pretrained(out)
    fast.save_pretrained(out)
    return out


class InProcessCuda:
    def __init__(self, version_dir: Path, max_length: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.session = ort.InferenceSession(str(version_dir / "model.onnx"),
                                            providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert self.session.get_providers()[0] == "CUDAExecutionProvider", self.session.get_providers()
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, items: List[str]) -> Any:
        import numpy as np

        rows = self.tokenizer.encode_batch(list(items))
        width = max(len(r.ids) for r in rows)
        feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in self.inputs}
        for k, r in enumerate(rows):
            n = len(r.ids)
            feed["input_ids"][k, :n] = r.ids
            feed["attention_mask"][k, :n] = 1
        return self.session.run(None, feed)


def bench_size(size: str, args: argparse.Namespace, have: Dict[str, Optional[str]], work: Path) -> List[str]:
    from transformers import pipeline

    items = texts()
    checkpoint = build_checkpoint(size, work / f"{size}-checkpoint")
    systems: Dict[str, Callable[[], Figure]] = {}
    pipe = pipeline("text-classification", model=str(checkpoint), device=0)
    kwargs = {"truncation": True, "max_length": args.max_length}
    systems["pipeline 1/call"] = lambda: one_at_a_time(lambda t: pipe(t, **kwargs), items, args.seconds)
    systems["pipeline batch 32"] = lambda: in_lists(lambda ts: pipe(list(ts), batch_size=LIST, **kwargs), items,
                                                    args.seconds)
    servers, notes = [], []
    warmups: List[Callable[[List[str]], Any]] = [lambda ts: pipe(ts, batch_size=LIST, **kwargs)]
    if have["ort-cuda"] is None:
        from tritonize.exporters.export import ExportOptions, export

        repository = work / f"{size}-repository"
        variants = {"fp32": {}, "fp16": {"precision": "fp16"}}
        exported = []
        for label, extra in variants.items():
            try:
                export(ExportOptions(str(checkpoint), "text-classification", f"{size}-{label}", repository,
                                     device="cuda", max_length=args.max_length, max_batch_size=64,
                                     min_agreement=args.min_agreement, **extra), stream=io.StringIO())
                exported.append(label)
            except Exception as exc:  # noqa: BLE001 - a refused variant is reported
                notes.append(f"{label}: not served ({str(exc)[:200]})")
        for label in exported:
            ort_model = InProcessCuda(repository / f"{size}-{label}_pipeline" / "1", args.max_length)
            warmups.append(ort_model.run)
            systems[f"in-process ORT {label} 1/call"] = (
                lambda m=ort_model: one_at_a_time(lambda t: m.run([t]), items, args.seconds))
            systems[f"in-process ORT {label} batch 32"] = (
                lambda m=ort_model: in_lists(lambda ts: m.run(ts), items, args.seconds))
        if have["tritonserver"] is None and exported:
            from tritonize.client import Client
            from tritonize.deploy import LocalServer, free_port

            server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(),
                                 metrics_port=free_port(), ready_timeout=600).start()
            servers.append(server)
            client = Client(server.grpc_url)
            for label in exported:
                model = f"{size}-{label}"
                warmups.append(lambda ts, m=model: client.classify(m, list(ts)))
                systems[f"served {label} 1 caller"] = (
                    lambda m=model: one_at_a_time(lambda t: client.classify(m, t), items, args.seconds))
                systems[f"served {label} {CALLERS} callers"] = (
                    lambda m=model: concurrently(lambda: (lambda t: client.classify(m, t)), items, args.seconds,
                                                 CALLERS))
                systems[f"served {label} lists of 32"] = (
                    lambda m=model: in_lists(lambda ts: client.classify(m, list(ts)), items, args.seconds))
        elif have["tritonserver"] is not None:
            notes.append(f"served: skipped ({have['tritonserver']})")
    else:
        notes.append(f"in-process ORT and served: skipped ({have['ort-cuda']})")
    try:
        for warm in warmups:  # CUDA contexts, kernels and the server's first runs: not timed
            warm(items[:LIST])
        results = interleaved(systems, args.rounds)
    finally:
        for server in servers:
            server.stop()
    lines = [f"{size} ({SIZES[size][1]} layers, hidden {SIZES[size][0]}), sequence <= {args.max_length} tokens:"]
    lines.append(f"  {'system':<34} {'texts/s':>9} {'p50 ms':>8}")
    for name, figures in results.items():
        per_s = statistics.median(f.per_s for f in figures)
        p50 = [f.p50_ms for f in figures if f.p50_ms is not None]
        lines.append(f"  {name:<34} {per_s:>9.1f} {statistics.median(p50) if p50 else float('nan'):>8.2f}")
    lines.extend(f"  note: {note}" for note in notes)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--min-agreement", type=float, default=0.99)
    args = parser.parse_args()
    have = prerequisites()
    if have["torch-cuda"] is not None:
        print(f"no GPU for this benchmark: {have['torch-cuda']}", file=sys.stderr)
        return 2
    import torch

    print(f"{datetime.date.today()} on {torch.cuda.get_device_name(0)}; "
          + ", ".join(f"{k}: {'yes' if v is None else 'no'}" for k, v in have.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="tritonize-gpu-bench-") as tmp:
        for size in args.sizes.split(","):
            print("\n".join(bench_size(size, args, have, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
