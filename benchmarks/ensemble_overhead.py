"""Where one request's time goes, between in-process ONNX Runtime and the served ensemble.

    .venv/bin/python benchmarks/ensemble_overhead.py [--calls 300] [--rounds 3]

Needs `make demo` to have run once (.cache/checkpoints/minilm-sentiment). It
exports the demo's sentiment classifier three ways into a temporary
repository: the fused layout (the default), the fused layout with ONNX
Runtime's spinning off (``--spin off``), and the three-model layout
(``--layout steps``); adds an ``echo`` Python model that returns its input (a
gRPC call and one stub round trip, no work); starts one tritonserver; and
sends one tweet per call from one caller, rounds interleaved. It prints the
median per call of:

* in-process ORT: tokenize + ``session.run`` on the same model.onnx, in this process;
* each hop alone through raw tritonclient: ``echo``; the steps layout's
  tokenizer, encoder (sent the tokens) and postprocess (sent logits) models;
  the fused layout's one step;
* each ensemble, through raw tritonclient and through the SDK.

The differences are the costs: a gRPC call plus a stub round trip (``echo``),
the ensemble's scheduling (ensemble minus its one fused step), the two extra
stub hops of the steps layout (steps ensemble minus fused ensemble), the
SDK's own work (SDK minus raw).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-sentiment"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

ECHO = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "TEXT")
                                                           .as_numpy())]) for r in requests]
'''
ECHO_CONFIG = '''name: "echo"
backend: "python"
max_batch_size: 32
input { name: "TEXT" data_type: TYPE_STRING dims: 1 }
output { name: "OUT" data_type: TYPE_STRING dims: 1 }
instance_group { count: 1 kind: KIND_CPU }
dynamic_batching { }
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (CHECKPOINT / "config.json").is_file():
        print("run `make demo` first: it builds the checkpoint", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import numpy as np
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient
    from tokenizers import Tokenizer

    from classification import tweets
    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port
    from tritonize.exporters.export import ExportOptions, export

    texts = tweets(args.calls, seed=5)
    with tempfile.TemporaryDirectory(prefix="tritonize-overhead-") as tmp:
        repository = Path(tmp) / "repository"
        for name, extra in (("fused", {}), ("nospin", {"allow_spinning": False}), ("steps", {"layout": "steps"})):
            export(ExportOptions(str(CHECKPOINT), "text-classification", name, repository, **extra),
                   stream=io.StringIO())
        (repository / "echo" / "1").mkdir(parents=True)
        (repository / "echo" / "1" / "model.py").write_text(ECHO)
        (repository / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)

        tokenizer = Tokenizer.from_file(str(repository / "fused_pipeline" / "1" / "tokenizer.json"))
        tokenizer.enable_truncation(512)
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        session = ort.InferenceSession(str(repository / "fused_pipeline" / "1" / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])

        def tokens(text: str) -> Dict[str, np.ndarray]:
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

        server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
        with server, Client(server.grpc_url) as sdk:
            raw = grpcclient.InferenceServerClient(server.grpc_url)

            def infer(model: str, arrays: Dict[str, np.ndarray]) -> None:
                inputs = []
                for name, array in arrays.items():
                    kind = "BYTES" if array.dtype == object else "INT64" if array.dtype == np.int64 else "FP32"
                    tensor = grpcclient.InferInput(name, list(array.shape), kind)
                    tensor.set_data_from_numpy(array)
                    inputs.append(tensor)
                raw.infer(model, inputs)

            def text(t: str) -> Dict[str, np.ndarray]:
                return {"TEXT": np.array([[t.encode()]], dtype=object)}

            def encoder_tokens(t: str) -> Dict[str, np.ndarray]:
                return {k.upper(): v for k, v in tokens(t).items()}

            logits = {"LOGITS": np.array([[0.1, 0.5, -0.2]], dtype=np.float32)}
            systems: Dict[str, Callable[[str], None]] = {
                "in-process ORT (tokenize + run)": lambda t: session.run(None, tokens(t)),
                "echo model (gRPC + 1 stub round trip)": lambda t: infer("echo", text(t)),
                "steps: tokenizer model alone": lambda t: infer("steps_tokenizer", text(t)),
                "steps: encoder model alone (sent tokens)": lambda t: infer("steps_encoder", encoder_tokens(t)),
                "steps: postprocess model alone (sent logits)": lambda t: infer("steps_postprocess", logits),
                "steps: ensemble, raw tritonclient": lambda t: infer("steps", text(t)),
                "fused: its one step alone": lambda t: infer("fused_pipeline", text(t)),
                "fused: ensemble, raw tritonclient": lambda t: infer("fused", text(t)),
                "fused: ensemble, SDK": lambda t: sdk.classify("fused", t),
                "fused, spinning off: ensemble, raw tritonclient": lambda t: infer("nospin", text(t)),
            }
            for call in systems.values():
                for t in texts[:20]:
                    call(t)
            medians: Dict[str, List[float]] = {name: [] for name in systems}
            for round_ in range(args.rounds):
                order = list(systems)
                random.Random(round_).shuffle(order)
                for name in order:
                    latencies = []
                    for t in texts:
                        started = time.perf_counter()
                        systems[name](t)
                        latencies.append((time.perf_counter() - started) * 1000)
                    medians[name].append(statistics.median(latencies))
    figure = {name: statistics.median(values) for name, values in medians.items()}
    base = figure["in-process ORT (tokenize + run)"]
    print(f"one tweet per call, 1 caller, median of {args.rounds} rounds of {len(texts)} calls\n")
    print("| path | p50 ms | over in-process ORT |")
    print("|---|---|---|")
    for name, value in figure.items():
        print(f"| {name} | {value:.2f} | {value - base:+.2f} |")
    print()
    print(f"- ensemble scheduling (fused ensemble - its step): "
          f"{figure['fused: ensemble, raw tritonclient'] - figure['fused: its one step alone']:+.2f} ms")
    print(f"- the steps layout's two extra stub hops (steps ensemble - fused ensemble): "
          f"{figure['steps: ensemble, raw tritonclient'] - figure['fused: ensemble, raw tritonclient']:+.2f} ms")
    print(f"- spinning off (fused): "
          f"{figure['fused, spinning off: ensemble, raw tritonclient'] - figure['fused: ensemble, raw tritonclient']:+.2f} ms")
    print(f"- the SDK's own work: {figure['fused: ensemble, SDK'] - figure['fused: ensemble, raw tritonclient']:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
