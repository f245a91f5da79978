"""A real tritonserver fills in mask tokens exactly as ``pipeline("fill-mask")`` does.

For every architecture with a masked-LM head (WordPiece, byte-level BPE and
SentencePiece tokenizers, each with its own mask token and decoding): the same
tokens, ``token_str`` and ``sequence``, in the same order, and scores within
1e-5, with the default ``top_k``, other ``top_k``, ``targets`` (a multi-token
target included), several masks in one text and batches of texts; in the
fused layout (every architecture) and the steps layout (three tokenizer
families); through ``Client.fill_mask``, ``Client.predict``, ``AsyncClient``
and a plain KServe v2 client. The oracle is the transformers pipeline on the
PyTorch checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import torch
import pytest

from checkpoints import ARCHITECTURES, make_tiny_checkpoint
from conftest import CHECKPOINT_CACHE, Served, serve_exports
from tritonize.client import AsyncClient, Client, InvalidInput, MaskFill

pytestmark = pytest.mark.server

TOLERANCE = 1e-5
STEPS = ("bert", "roberta")  # also served in the steps layout (WordPiece, byte-level BPE)
SHORT_MAX_LENGTH = 16

# "{m}" stands for each model's own mask token, "{p}" for its padding token (the pipeline drops it by id)
SINGLE = [
    "The capital of France is {m}.",
    "{m}",
    "I {m} this movie, the acting was superb!",
    "Café au lait, s'il vous {m}! 東京 is lovely in spring 🌸.",
    "He said it is n't fine , is n't it ? I 'm sure he 's {m} .",
    "  spaces   around {m}   the mask  ",
]
MULTI = [
    "I {m} it, it's {m} good!",
    "{m} {m} {m}",
    "The {m} in Florence was {m}, and the {m} was long.",
    "{m} {p} {m} of it",
]


def tiny_mlm(arch: str) -> Path:
    return make_tiny_checkpoint(arch, CHECKPOINT_CACHE / f"fill-mask-{arch}", "fill-mask")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """A tiny masked LM of every architecture (fused), two in the steps layout, and a short one, on one server."""
    from tritonize.exporters.export import ExportOptions

    repository = tmp_path_factory.mktemp("fill-mask") / "model_repository"
    checkpoints = {arch: tiny_mlm(arch) for arch in ARCHITECTURES}
    exports = [ExportOptions(str(path), "fill-mask", f"fm-{arch}", repository) for arch, path in checkpoints.items()]
    exports += [ExportOptions(str(checkpoints[arch]), "fill-mask", f"fm-steps-{arch}", repository, layout="steps")
                for arch in STEPS]
    # a short max length (truncation) and a small batch limit (the SDK splits a call into requests)
    exports.append(ExportOptions(str(checkpoints["bert"]), "fill-mask", "fm-short", repository,
                                 max_length=SHORT_MAX_LENGTH, max_batch_size=2))
    # a tokenizer that cleans up tokenization spaces when it decodes (" ." -> ".", " n't" -> "n't" ...)
    checkpoints["cleanup"] = with_clean_up(checkpoints["roberta"], repository.parent / "roberta-clean-up")
    exports.append(ExportOptions(str(checkpoints["cleanup"]), "fill-mask", "fm-cleanup", repository))
    yield from serve_exports(repository, exports, checkpoints)


def with_clean_up(checkpoint: Path, copy: Path) -> Path:
    import shutil

    shutil.copytree(checkpoint, copy)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["clean_up_tokenization_spaces"] = True
    config_path.write_text(json.dumps(config))
    return copy


@pytest.fixture(scope="module")
def client(served) -> Iterator[Client]:
    with Client(served.url) as client:
        yield client


@lru_cache(maxsize=None)
def _pipeline(checkpoint: str) -> Any:
    from transformers import pipeline

    logging.getLogger("transformers").setLevel(logging.ERROR)  # the pipeline warns about replaced targets
    return pipeline("fill-mask", model=checkpoint, device="cpu")


def pipe_of(served: Served, arch: str) -> Any:
    return _pipeline(str(served.checkpoints[arch]))


def texts_for(pipe: Any, templates) -> list:
    tokenizer = pipe.tokenizer
    return [template.replace("{m}", tokenizer.mask_token).replace("{p}", tokenizer.pad_token) for template in templates]


def assert_same(got: Any, want: Any, context: str) -> None:
    """``got`` (MaskFill, nested as the pipeline nests) equals ``want`` (the pipeline's dicts)."""
    if isinstance(want, dict):
        assert isinstance(got, MaskFill), f"{context}: {got!r} is not a MaskFill"
        assert list(got.keys()) == list(want.keys()), context
        assert (got.token, got.token_str, got.sequence) == (want["token"], want["token_str"], want["sequence"]), (
            f"{context}: {got} vs {want}")
        assert isinstance(got.token, int) and isinstance(got.score, float)
        assert math.isclose(got.score, want["score"], abs_tol=TOLERANCE), f"{context}: {got} vs {want}"
        return
    assert isinstance(got, list) and isinstance(want, list), f"{context}: {got!r} vs {want!r}"
    assert len(got) == len(want), f"{context}: {len(got)} items vs the pipeline's {len(want)}"
    for index, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"{context}[{index}]")


def _models(arch: str) -> list:
    return [f"fm-{arch}"] + ([f"fm-steps-{arch}"] if arch in STEPS else [])


# -- parity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [None, 1, 3])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_mask_matches_pipeline(served, client, arch, top_k):
    pipe = pipe_of(served, arch)
    kwargs = {} if top_k is None else {"top_k": top_k}
    for model in _models(arch):
        for text in texts_for(pipe, SINGLE):
            want = pipe(text, **kwargs)
            assert len(want) == (top_k or 5)
            assert_same(client.fill_mask(model, text, top_k=top_k), want, f"{model} top_k={top_k} {text!r}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_several_masks_match_pipeline(served, client, arch):
    pipe = pipe_of(served, arch)
    for model in _models(arch):
        for text in texts_for(pipe, MULTI):
            for top_k in (None, 2):
                want = pipe(text, **({} if top_k is None else {"top_k": top_k}))
                assert isinstance(want[0], list) and len(want) == text.count(pipe.tokenizer.mask_token)
                assert_same(client.fill_mask(model, text, top_k=top_k), want, f"{model} {text!r}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batch_matches_pipeline(served, client, arch):
    """Texts of different lengths and mask counts in one request (padded together): each answered as alone."""
    pipe = pipe_of(served, arch)
    texts = texts_for(pipe, SINGLE + MULTI)
    want = pipe(texts, top_k=3)
    for model in _models(arch):
        assert_same(client.fill_mask(model, texts, top_k=3), want, f"{model} batch")
        # a list of one text gets a list of one result, as every SDK call (the pipeline unwraps it)
        assert_same(client.fill_mask(model, texts[:1]), [pipe(texts[:1])], f"{model} list of one")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_targets_match_pipeline(served, client, arch):
    pipe = pipe_of(served, arch)
    tokenizer = pipe.tokenizer
    vocab = tokenizer.get_vocab()
    long_word = "counterrevolutionaries"
    # the multi-token target really is one: not in the vocabulary, several tokens, the first one stands for it
    assert long_word not in vocab and len(tokenizer(long_word, add_special_tokens=False)["input_ids"]) > 1
    raw_token = tokenizer.convert_ids_to_tokens(len(vocab) // 2)  # a vocabulary entry as it is spelled there
    targets = ["the", "paris", raw_token, long_word, "the"]
    single, several = texts_for(pipe, ["The capital of France is {m}.", "I {m} it, it's {m} good!"])
    for model in _models(arch):
        for text in (single, several):
            for kwargs in ({"targets": targets}, {"targets": targets, "top_k": 2}, {"targets": "the"},
                           {"targets": [long_word], "top_k": 4}):
                want = pipe(text, **kwargs)
                assert_same(client.fill_mask(model, text, **kwargs), want, f"{model} {kwargs} {text!r}")
    # top_k is capped at the number of (distinct) targets
    assert len(client.fill_mask(f"fm-{arch}", single, targets=targets, top_k=50)) == len(
        set(pipe.get_target_ids(targets)))


def test_clean_up_tokenization_spaces_matches_pipeline(served, client):
    pipe, plain = pipe_of(served, "cleanup"), pipe_of(served, "roberta")
    assert pipe.tokenizer.clean_up_tokenization_spaces and not plain.tokenizer.clean_up_tokenization_spaces
    texts = texts_for(pipe, SINGLE + MULTI + ["It is n't {m} , is it ? I 'm {m} !"])
    want = pipe(texts, top_k=3)
    assert want != plain(texts, top_k=3)  # the clean-up changes some sequences
    assert_same(client.fill_mask("fm-cleanup", texts, top_k=3), want, "fm-cleanup")


def test_truncation_and_chunks_match_pipeline(served, client):
    """max_length 16: texts are cut as ``tokenizer_kwargs={"truncation": True, "max_length": 16}`` cuts them;
    max_batch_size 2: a call of five texts goes as three requests, answered in order."""
    pipe = pipe_of(served, "bert")
    cut = {"truncation": True, "max_length": SHORT_MAX_LENGTH}
    texts = texts_for(pipe, ["A {m} and then many more words follow it, far past the sixteenth token of the text.",
                             "{m} one", "two {m} {m}", "the last {m} of a long sentence with a lot of words in it",
                             "five {m}"])
    assert len(pipe.tokenizer(texts[0])["input_ids"]) > SHORT_MAX_LENGTH
    want = [pipe(text, tokenizer_kwargs=cut) for text in texts]
    assert_same(client.fill_mask("fm-short", texts), want, "fm-short")
    late = texts_for(pipe, ["word " * 20 + "{m}"])[0]  # the mask is cut away: the pipeline refuses it too
    from transformers.pipelines.base import PipelineException

    with pytest.raises(PipelineException, match="No mask_token"):
        pipe(late, tokenizer_kwargs=cut)
    with pytest.raises(InvalidInput, match=r"input 'TEXT'\[0\] holds no mask token '\[MASK\]' within its first 16"):
        client.fill_mask("fm-short", late)


# -- the SDK ------------------------------------------------------------------------------------
def test_predict_async_and_results(served, client):
    from tritonize import tasks
    from tritonize.client.tasks import codec_for

    pipe = pipe_of(served, "roberta")
    text, several = texts_for(pipe, ["The capital of France is {m}.", "{m} and {m}"])
    want = pipe(text, top_k=2)
    assert_same(client.predict("fm-roberta", text=text, top_k=2), want, "predict")
    assert_same(client.predict("fm-roberta", text=[text, several], targets=["the", "and"]),
                pipe([text, several], targets=["the", "and"]), "predict with targets")

    async def run():
        async with AsyncClient(served.url) as aio:
            return await asyncio.gather(aio.fill_mask("fm-roberta", text, top_k=2),
                                        aio.predict("fm-roberta", text=several))

    got, got_several = asyncio.run(run())
    assert_same(got, want, "async")
    assert_same(got_several, pipe(several), "async predict")
    # results read as the pipeline's dicts do
    first = got[0]
    assert dict(first) == first.to_dict() and first["token_str"] == want[0]["token_str"]
    assert set(first.to_dict()) == set(want[0])
    # the task and its load-test samples: "{mask}" becomes the model's own mask token
    assert tasks.get("mlm").name == tasks.get("mask").name == "fill-mask"
    codec = codec_for("fill-mask")
    info = client.model_info("fm-roberta")
    assert info.task == "fill-mask" and info.parameters["tritonize.mask_token"] == "<mask>"
    for sample in tasks.get("fill-mask").samples:
        arguments = codec.sample_arguments(info, sample)
        assert arguments["text"].count("<mask>") == 1 and "{mask}" not in arguments["text"]
        assert_same(client.predict("fm-roberta", **arguments), pipe(arguments["text"]), "sample")
    assert codec.to_json(got) == [fill.to_dict() for fill in got]


def test_plain_kserve_client_reads_typed_tensors(served):
    """Without the SDK: the model says its tensors, and the answer is [texts, masks, k] plus COUNT."""
    import tritonclient.grpc as grpcclient

    raw = grpcclient.InferenceServerClient(served.url)
    metadata = raw.get_model_metadata("fm-xlm-roberta", as_json=True)
    outputs = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    assert outputs == {"SCORE": "FP32", "TOKEN": "INT64", "TOKEN_STR": "BYTES", "SEQUENCE": "BYTES", "COUNT": "INT64"}
    pipe = pipe_of(served, "xlm-roberta")
    texts = texts_for(pipe, ["one {m} here", "{m} and {m} there"])
    text = grpcclient.InferInput("TEXT", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    response = raw.infer("fm-xlm-roberta", [text], parameters={"top_k": 2})
    assert response.as_numpy("SCORE").shape == (2, 2, 2)
    assert response.as_numpy("COUNT").reshape(-1).tolist() == [1, 2]
    want = pipe(texts[1], top_k=2)
    assert response.as_numpy("TOKEN")[1].tolist() == [[d["token"] for d in mask] for mask in want]
    assert [s.decode() for s in response.as_numpy("SEQUENCE")[1, 1]] == [d["sequence"] for d in want[1]]


def test_load_test_sends_the_built_in_samples_with_the_models_mask_token(served, tmp_path):
    """`tritonize loadtest` on a fill-mask model: its samples' "{mask}" becomes <mask>, so none fails."""
    from test_loadtest import locust_rows, loadtest, triton_counter

    before = triton_counter(served.server.metrics_url).get("fm-roberta", 0.0)
    reports = tmp_path / "reports"
    result = loadtest("--host", served.url, "--metrics-url", served.server.metrics_url, "--models", "fm-roberta",
                      "--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--think-time", "0.05-0.1",
                      "--csv", str(reports))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    total = locust_rows(reports)["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
    after = triton_counter(served.server.metrics_url)["fm-roberta"]
    assert after - before >= int(total["Request Count"])


# -- bad input --------------------------------------------------------------------------------------
def test_bad_input_is_refused_as_the_pipeline_refuses_it(served, client):
    from transformers.pipelines.base import PipelineException

    pipe = pipe_of(served, "bert")
    with pytest.raises(PipelineException, match="No mask_token"):
        pipe("no mask here")
    with pytest.raises(InvalidInput, match=r"input 'TEXT'\[0\] holds no mask token '\[MASK\]'"):
        client.fill_mask("fm-bert", "no mask here")
    with pytest.raises(InvalidInput, match=r"input 'TEXT'\[1\] holds no mask token"):
        client.fill_mask("fm-steps-bert", ["one [MASK]", "none", "two [MASK]"])
    # targets that leave no token: the pipeline raises ValueError, the server INVALID_ARG
    with pytest.raises(ValueError, match="At least one target"):
        pipe("a [MASK]", targets=[""])
    with pytest.raises(InvalidInput, match="leaves no token to score"):
        client.fill_mask("fm-bert", "a [MASK]", targets=[""])
    vocab = len(pipe.tokenizer)
    with pytest.raises(RuntimeError):  # torch.topk: k out of range
        pipe("a [MASK]", top_k=vocab + 1)
    with pytest.raises(InvalidInput, match=f"top_k={vocab + 1} is more than the model's vocabulary"):
        client.fill_mask("fm-bert", "a [MASK]", top_k=vocab + 1)
    # refused before anything is sent (the pipeline would answer top_k=0 with nothing)
    for top_k in (0, -1, 2.5, True):
        with pytest.raises(InvalidInput, match="top_k must be a positive int"):
            client.fill_mask("fm-bert", "a [MASK]", top_k=top_k)
    with pytest.raises(InvalidInput, match="targets must hold at least one"):
        client.fill_mask("fm-bert", "a [MASK]", targets=[])
    with pytest.raises(InvalidInput, match=r"targets\[1\] must be a str"):
        client.fill_mask("fm-bert", "a [MASK]", targets=["a", 3])
    with pytest.raises(InvalidInput, match="serves 'fill-mask', not 'text-classification'"):
        client.classify("fm-bert", "a [MASK]")
    assert client.fill_mask("fm-bert", []) == []


def test_bad_request_parameters_are_invalid_arg_and_the_server_stays_up(served):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    raw = grpcclient.InferenceServerClient(served.url)
    text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"a [MASK] b"]], dtype=object))
    for parameters, message in (({"top_k": 0}, "top_k must be an integer >= 1"),
                                ({"targets": "[]"}, "targets is an empty list"),
                                ({"targets": "[1, 2]"}, "targets must be a JSON list of strings")):
        for model in ("fm-bert", "fm-steps-bert"):
            with pytest.raises(InferenceServerException, match=message) as raised:
                raw.infer(model, [text], parameters=parameters)
            assert raised.value.status() == "StatusCode.INVALID_ARGUMENT", raised.value.status()
    assert raw.is_server_live()
    # one target given as a plain string, as the pipeline takes one
    response = raw.infer("fm-bert", [text], parameters={"targets": "the"})
    assert response.as_numpy("TOKEN").reshape(-1).tolist() == [pipe_of(served, "bert").tokenizer.get_vocab()["the"]]


# -- export -----------------------------------------------------------------------------------------
def test_export_refuses_a_tokenizer_without_mask_token(tmp_path):
    import shutil

    from tritonize.exporters.checkpoint import ExportError
    from tritonize.exporters.export import ExportOptions, export

    checkpoint = tmp_path / "no-mask"
    shutil.copytree(tiny_mlm("bert"), checkpoint)
    config_path = checkpoint / "tokenizer_config.json"
    config: Dict[str, Any] = json.loads(config_path.read_text())
    config["mask_token"] = None
    config_path.write_text(json.dumps(config))
    with pytest.raises(ExportError, match="has no mask token"):
        export(ExportOptions(str(checkpoint), "fill-mask", "no-mask", tmp_path / "repo"))
    classifier = make_tiny_checkpoint("bert", CHECKPOINT_CACHE / "text-classification-bert-single",
                                      "text-classification", problem_type="single_label_classification",
                                      num_labels=3)
    with pytest.raises(ExportError, match="has no fill-mask head"):
        export(ExportOptions(str(classifier), "fill-mask", "wrong-head", tmp_path / "repo"))
    assert not (tmp_path / "repo" / "no-mask").exists()


def test_optimized_graph_passes_the_accuracy_gate(tmp_path):
    """The gate answers masked built-in texts with the pipeline (PyTorch, then the O1 graph) and compares."""
    import io

    from tritonize.exporters.eval_data import TEXTS
    from tritonize.exporters.export import ExportOptions, export

    log = io.StringIO()
    result = export(ExportOptions(str(tiny_mlm("distilbert")), "fill-mask", "fm-o1", tmp_path / "repo",
                                  optimize="O1"), stream=log)
    assert result.graph["tritonize.graph"] == "O1", log.getvalue()
    assert int(result.graph["tritonize.eval_inputs"]) == len(TEXTS)
    assert float(result.graph["tritonize.agreement"]) >= 0.99


def test_the_encoder_keeps_only_the_mask_positions(served):
    """[texts, masks, vocab] leave the encoder, not [texts, tokens, vocab]: 62 MB per 512-token text at 30k."""
    import tritonclient.grpc as grpcclient

    pipe = pipe_of(served, "bert")
    ids = pipe.tokenizer(texts_for(pipe, ["a {m} b c d e f {m} g", "one {m}"]), padding=True, return_tensors="np")
    raw = grpcclient.InferenceServerClient(served.url)
    inputs = []
    for name, key in (("INPUT_IDS", "input_ids"), ("ATTENTION_MASK", "attention_mask"),
                      ("TOKEN_TYPE_IDS", "token_type_ids")):
        tensor = grpcclient.InferInput(name, list(ids[key].shape), "INT64")
        tensor.set_data_from_numpy(ids[key].astype(np.int64))
        inputs.append(tensor)
    logits = raw.infer("fm-steps-bert_encoder", inputs).as_numpy("LOGITS")
    width = ids["input_ids"].shape[1]
    assert width > 2 and logits.shape == (2, 2, pipe.model.config.vocab_size)
    with torch.no_grad():
        full = pipe.model(**{k: torch.tensor(v) for k, v in ids.items()}).logits.numpy()
    positions = [np.flatnonzero(row == pipe.tokenizer.mask_token_id) for row in ids["input_ids"]]
    np.testing.assert_allclose(logits[0], full[0, positions[0]], atol=1e-4)
    np.testing.assert_allclose(logits[1, :1], full[1, positions[1]], atol=1e-4)
    assert not logits[1, 1].any()  # the second text has one mask: its second row is padding
