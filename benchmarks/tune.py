"""`tritonize tune` on the demo's models: the tuned configuration against the default export's, one run each.

    .venv/bin/python benchmarks/tune.py [--models sentiment,pii] [--p95-ms 100] [--budget 5m]
        [--concurrency 1,2,4,8,16] [--seconds 6] [--out benchmarks/results/tune]

Needs `make demo` to have run once (it builds the checkpoints in .cache/checkpoints). Each model is
exported with the defaults of ``tritonize export`` into a temporary repository, then ``tritonize tune``
searches it under the SLA ``p95_ms <= --p95-ms, max_fail_ratio 0`` (the classifier on tweets, the PII
model on the PII texts of the tests), and ``--apply``s the winner. What it prints is tune's own report:
every candidate's highest throughput that met the SLA, and the winner against the default config, both
measured in the same run (the finalists measured again, interleaved, and their medians compared). The
plots go to ``--out`` (the README shows them).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO_ROOT / ".cache" / "checkpoints"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

MODELS = {  # name -> (task, checkpoint folder)
    "sentiment": ("text-classification", "minilm-sentiment"),
    "pii": ("token-classification", "rampart-pii"),
}


def inputs_file(task: str, path: Path, count: int = 300) -> Path:
    """The load's inputs, one text per line: tweets for the classifier, PII texts for NER."""
    from serving import inputs_for

    items = inputs_for(task, count, seed=11)
    path.write_text("\n".join(json.dumps({"text": t}) for t in items) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--p95-ms", type=float, default=100.0)
    parser.add_argument("--budget", default="5m")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--seconds", default="6")
    parser.add_argument("--warmup", default="2")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "tune")
    args = parser.parse_args()

    from tritonize.exporters.export import ExportOptions, export

    for name in args.models.split(","):
        task, folder = MODELS[name]
        checkpoint = CHECKPOINTS / folder
        if not (checkpoint / "config.json").is_file():
            print(f"{checkpoint} is missing: run `make demo` first", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="tritonize-bench-tune-") as tmp:
            work = Path(tmp)
            repository = work / "repository"
            export(ExportOptions(str(checkpoint), task, name, repository), stream=io.StringIO())
            sla = work / "sla.yaml"
            sla.write_text(f"Aggregated:\n  p95_ms: {args.p95_ms:g}\n  max_fail_ratio: 0\n")
            data = inputs_file(task, work / "inputs.jsonl")
            out = args.out / name
            command = [sys.executable, "-m", "tritonize.cli", "tune", str(repository), "--model", name,
                       "--sla", str(sla), "--budget", args.budget, "--concurrency", args.concurrency,
                       "--seconds", args.seconds, "--warmup", args.warmup, "--inputs", str(data),
                       "--out", str(out), "--apply"]
            print(f"== {name} ({task}), SLA p95 <= {args.p95_ms:g} ms, no failures; budget {args.budget}", flush=True)
            result = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines = result.stderr.splitlines()
            start = next((i for i, line in enumerate(lines) if " candidates measured" in line), 0)
            print("\n".join(lines[start:]), flush=True)  # tune's report (its progress is in tune.csv)
            print(result.stdout.strip(), flush=True)
            if result.returncode not in (0, 1):
                return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
