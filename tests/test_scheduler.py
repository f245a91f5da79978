"""The encoder's token budget, the request limits and the bounded queues, on a real tritonserver.

The budget is checked from Triton's own metrics endpoint (the encoder step
publishes its ONNX Runtime runs as custom metrics), the answers against the
transformers pipelines, the queue policy against Triton's own refusal.
"""

from __future__ import annotations

import io
import math
import re
import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conftest import serve_exports, tiny_classifier, tiny_ner
from tritonize.client import Client
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.export import ExportOptions, export

pytestmark = pytest.mark.server

NER_TEXT = " ".join(f"Report {i}: Maria Garcia visited Toronto and met Ahmed Khan of Globex." for i in range(40))
CLS_TEXTS = ["I love this.", "", "a", "The service was terrible, and the food arrived cold after an hour.",
             "東京 and 北京 are big cities 🌸🚀", " ".join(["The committee reviewed the numbers."] * 30)]


def _metrics(url: str) -> dict:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        match = re.match(r'(tritonize_encoder_\w+)\{.*model="([^"]+)".*\} (\S+)', line)
        if match:
            found[(match.group(1), match.group(2))] = float(match.group(3))
    return found


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    """Tiny models with a token budget of two full rows, and a classifier with a queue of one request."""
    repository = tmp_path_factory.mktemp("budget") / "model_repository"
    ner, cls = tiny_ner("bert"), tiny_classifier("bert-single")
    exports = [
        ExportOptions(str(ner), "token-classification", "ner-budget", repository, max_length=32,
                      max_batch_tokens=64, max_windows=0, task_options={"stride": 8, "aggregation_strategy": "first"}),
        ExportOptions(str(cls), "text-classification", "cls-budget", repository, max_length=16, max_batch_tokens=16),
        ExportOptions(str(cls), "text-classification", "cls-queue", repository, max_batch_size=1, max_queue_size=1),
    ]
    yield from serve_exports(repository, exports, {"ner": ner, "cls": cls})


def test_long_text_runs_in_budgeted_sub_batches_and_matches_the_pipeline(budgeted):
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(budgeted.checkpoints["ner"]), aggregation_strategy="first")
    pipe.tokenizer.model_max_length = 32
    before = _metrics(budgeted.server.metrics_url)
    with Client(budgeted.url) as client:
        got = client.extract_entities("ner-budget", NER_TEXT)
    want = pipe(NER_TEXT, stride=8)
    assert [(e.label, e.start, e.end, e.word) for e in got] == [
        (w["entity_group"], w["start"], w["end"], w["word"]) for w in want
    ]
    assert all(math.isclose(e.score, float(w["score"]), abs_tol=1e-4) for e, w in zip(got, want))
    after = _metrics(budgeted.server.metrics_url)
    key = lambda name: (name, "ner-budget_pipeline")  # noqa: E731  (the fused layout's one stub)
    runs = after[key("tritonize_encoder_runs_total")] - before.get(key("tritonize_encoder_runs_total"), 0)
    rows = after[key("tritonize_encoder_rows_total")] - before.get(key("tritonize_encoder_rows_total"), 0)
    windows = len(pipe.tokenizer(NER_TEXT, truncation=True, max_length=32, stride=8,
                                 return_overflowing_tokens=True)["input_ids"])
    assert rows == windows > 10
    assert runs >= windows / 2  # at most two 32-token rows fit in 64 tokens
    assert after[key("tritonize_encoder_largest_run_tokens")] <= 64


def test_sorted_sub_batches_answer_each_text_as_alone(budgeted):
    """Budget 16 = one row per run: every text of a batch is computed on its own, padded only to itself."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(budgeted.checkpoints["cls"]), top_k=None,
                    truncation=True, max_length=16)
    with Client(budgeted.url) as client:
        served = client.classify("cls-budget", CLS_TEXTS)
    for text, got in zip(CLS_TEXTS, served):
        want = {w["label"]: w["score"] for w in pipe([text])[0]}
        assert all(math.isclose(g.score, want[g.label], abs_tol=1e-4) for g in got), text
    metrics = _metrics(budgeted.server.metrics_url)
    assert metrics[("tritonize_encoder_largest_run_tokens", "cls-budget_pipeline")] <= 16


def test_a_full_queue_is_refused_with_unavailable_and_the_sdk_retries_it(budgeted):
    raw = grpcclient.InferenceServerClient(budgeted.url)
    outcomes = []

    def call(i: int) -> None:
        tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[f"text {i} " * 40]], dtype=np.object_))
        try:
            raw.infer("cls-queue", [tensor])
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - we count what Triton answered
            outcomes.append(f"{exc.status()} {exc.message()}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [o for o in outcomes if o != "ok"]
    assert refused, "40 concurrent requests on a queue of 1 were all queued"
    assert all("UNAVAILABLE" in o and "Exceeds maximum queue size" in o for o in refused), refused[:3]
    assert "ok" in outcomes

    # the SDK's default policy retries the refusals with backoff: every call is answered, correctly
    results = {}

    def sdk(i: int) -> None:
        with Client(budgeted.url, timeout=60) as client:
            results[i] = client.classify("cls-queue", f"text {i % 3} " * 40)

    threads = [threading.Thread(target=sdk, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(20))
    with Client(budgeted.url, timeout=60) as client:
        alone = [client.classify("cls-queue", f"text {i} " * 40) for i in range(3)]
    for i, got in results.items():
        assert [r.label for r in got] == [r.label for r in alone[i % 3]]
        assert all(math.isclose(a.score, b.score, abs_tol=1e-6) for a, b in zip(got, alone[i % 3]))


def test_queue_policy_and_limits_are_in_every_config(tmp_path):
    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_ner("roberta")), "token-classification", "ner", repository,
                         max_queue_size=7, queue_timeout_ms=250, max_text_chars=1000, max_windows=3,
                         max_batch_tokens=2048, layout="steps"), stream=io.StringIO())
    configs = {p.parent.name: text_format.Parse(p.read_text(), mc.ModelConfig())
               for p in repository.glob("*/config.pbtxt")}
    for step in ("ner_tokenizer", "ner_encoder", "ner_postprocess"):
        policy = configs[step].dynamic_batching.default_queue_policy
        assert policy.max_queue_size == 7
        assert policy.default_timeout_microseconds == 250_000
        assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    params = lambda name: {k: v.string_value for k, v in configs[name].parameters.items()}  # noqa: E731
    assert params("ner_tokenizer")["tritonize.max_text_chars"] == "1000"
    assert params("ner_tokenizer")["tritonize.max_windows"] == "3"
    assert params("ner")["tritonize.max_text_chars"] == "1000"
    assert params("ner")["tritonize.max_windows"] == "3"
    encoder = params("ner_encoder")
    assert encoder["tritonize.max_batch_tokens"] == "2048"
    assert int(encoder["tritonize.vocab_size"]) > 0
    assert int(encoder["tritonize.max_positions"]) >= 32
    assert int(encoder["tritonize.max_rows"]) == 32 * 3
    # the fused layout: the same policy on its one step, each step's limits in its parameters
    fused = tmp_path / "fused"
    export(ExportOptions(str(tiny_ner("roberta")), "token-classification", "ner", fused,
                         max_queue_size=7, queue_timeout_ms=250, max_text_chars=1000, max_windows=3,
                         max_batch_tokens=2048), stream=io.StringIO())
    pipeline = text_format.Parse((fused / "ner_pipeline" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert pipeline.dynamic_batching.default_queue_policy.max_queue_size == 7
    assert pipeline.dynamic_batching.default_queue_policy.default_timeout_microseconds == 250_000
    merged = {k: v.string_value for k, v in pipeline.parameters.items()}
    assert (merged["tritonize.max_text_chars"], merged["tritonize.max_windows"]) == ("1000", "3")
    assert merged["tritonize.max_batch_tokens"] == "2048"


def test_default_limits_and_a_budget_below_the_max_length(tmp_path):
    checkpoint = str(tiny_classifier("bert-single"))
    export(ExportOptions(checkpoint, "text-classification", "c", tmp_path / "r"), stream=io.StringIO())
    config = text_format.Parse((tmp_path / "r" / "c_pipeline" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.parameters["tritonize.max_batch_tokens"].string_value == "auto"
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 256
    with pytest.raises(ExportError, match="--max-batch-tokens 8 is below the max length"):
        export(ExportOptions(checkpoint, "text-classification", "c", tmp_path / "r2", max_length=16,
                             max_batch_tokens=8), stream=io.StringIO())
    with pytest.raises(ExportError, match="--max-windows must be 0"):
        export(ExportOptions(checkpoint, "text-classification", "c", tmp_path / "r3", max_windows=-1),
               stream=io.StringIO())
    assert not (tmp_path / "r2").exists() or not list((tmp_path / "r2").glob("*/config.pbtxt"))
