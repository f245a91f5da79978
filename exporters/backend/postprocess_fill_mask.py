"""Postprocess step for fill-mask: the masked-LM logits at each mask token -> the best fillers.

It does what ``pipeline("fill-mask")`` does (transformers 4.57), text by text:

* the mask positions are where ``INPUT_IDS`` holds the tokenizer's mask id; a
  text without one is refused (INVALID_ARG), as the pipeline raises;
* softmax over the whole vocabulary at each mask (fp32, as torch's), then
  ``targets``, when given, keep only their ids, and the ``top_k`` best win
  (``top_k`` is capped at the number of targets);
* a target is looked up in the vocabulary as it is; else it is tokenized
  without special tokens and its first token stands for it (the pipeline
  warns); a target with no token at all is dropped; duplicates are removed
  as the pipeline removes them (``list(set(ids))``);
* ``token_str`` is ``tokenizer.decode([token])``; ``sequence`` is the text's
  ids, padding dropped, the mask replaced by the token, decoded with
  ``skip_special_tokens`` for a text of one mask (with several, the special
  tokens and the other masks stay, as the pipeline leaves them); decoding
  applies the checkpoint's ``clean_up_tokenization_spaces``.

Outputs for a request of ``b`` texts are ``[b, m, k]`` (``m`` the most masks of
any of its texts, ``k`` the number of fillers per mask): ``SCORE`` (fp32),
``TOKEN`` (int64), ``TOKEN_STR`` and ``SEQUENCE`` (strings), best first, and
``COUNT`` ``[b, 1]``, the masks of each text (the rest of a row is padding).

``top_k`` and ``targets`` (a JSON list of strings) may be set per request
through request parameters. The logic lives in plain functions of numpy
arrays (and a ``tokenizers.Tokenizer``), importable without a server.
"""

import json

import numpy as np
from tokenizers import Tokenizer

from tritonize_step import RequestError, Step, pb_utils, positive_int

DEFAULT_TOP_K = 5


def softmax(logits):
    """Softmax over the last axis, in fp32 (what ``torch.softmax`` computes on the pipeline's logits)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def clean_up_tokenization(text):
    """``PreTrainedTokenizerBase.clean_up_tokenization``: English tokenization artifacts removed."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def decode(tokenizer, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False):
    """``PreTrainedTokenizerFast.decode(ids, skip_special_tokens=...)``."""
    text = tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
    return clean_up_tokenization(text) if clean_up_tokenization_spaces else text


def target_ids(tokenizer, targets):
    """The ids ``FillMaskPipeline.get_target_ids`` resolves ``targets`` (a str or a list of str) to.

    Returns ``(ids, replaced)``: ``replaced`` lists ``(target, token)`` for each
    target that is not in the vocabulary and stands for its first token, and
    ``(target, None)`` for one that has no token at all (dropped). A list that
    leaves no id is refused, as the pipeline refuses it.
    """
    if isinstance(targets, str):
        targets = [targets]
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    ids, replaced = [], []
    for target in targets:
        id_ = vocab.get(target)
        if id_ is None:
            pieces = tokenizer.encode(target, add_special_tokens=False).ids
            if not pieces:
                replaced.append((target, None))
                continue
            id_ = pieces[0]
            replaced.append((target, tokenizer.id_to_token(id_)))
        ids.append(int(id_))
    ids = list(set(ids))  # the pipeline's order: it decides ties
    if not ids:
        raise RequestError(
            f"request parameter targets={list(targets)!r} leaves no token to score (at least one target "
            "must be provided when passed); give words or tokens of the model's vocabulary"
        )
    return np.array(ids, dtype=np.int64), replaced


def effective_top_k(top_k, targets, vocab_size):
    """``top_k``, capped at the number of targets, as the pipeline caps it; past the vocabulary: refused
    (``torch.topk`` raises there)."""
    if targets is not None and len(targets) < top_k:
        return len(targets)
    if targets is None and top_k > vocab_size:
        raise RequestError(
            f"request parameter top_k={top_k} is more than the model's vocabulary ({vocab_size} tokens); "
            f"ask for at most {vocab_size}"
        )
    return top_k


def mask_positions(input_ids, mask_token_id):
    """Positions of the mask token in one row of ids."""
    return np.flatnonzero(np.asarray(input_ids) == mask_token_id)


def fill_masks(tokenizer, input_ids, logits, mask_token_id, pad_token_id, top_k, targets=None,
               clean_up_tokenization_spaces=False, length=None, compact=False):
    """One text's fillers: one list per mask of ``(score, token, token_str, sequence)``, best first.

    ``input_ids`` [tokens] and ``logits`` [tokens, vocab] ([masks, vocab] when ``compact``) are one text's
    (padding after ``length`` real tokens, if given); ``targets`` the ids of
    :func:`target_ids` or None; ``top_k`` as :func:`effective_top_k` gives it.
    Returns [] for a text without a mask token.
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    if length is not None:
        input_ids = input_ids[:length]
        logits = logits if compact else logits[:length]
    masked = mask_positions(input_ids, mask_token_id)
    if not len(masked):
        return []
    # compact: the encoder kept only the mask positions' logits ([masks, vocab], tritonize.keep_token_id)
    probs = softmax(np.asarray(logits)[: len(masked)] if compact else np.asarray(logits)[masked])
    if targets is not None:
        probs = probs[..., targets]
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :top_k]
    single = len(masked) == 1
    # the pipeline drops padding by id: a pad token inside the text goes too
    keep = input_ids != pad_token_id if pad_token_id is not None else np.ones(len(input_ids), dtype=bool)
    token_strs = {}
    results = []
    for i, position in enumerate(masked):
        row = []
        for p in order[i]:
            score = float(probs[i, p])
            token = int(targets[p]) if targets is not None else int(p)
            tokens = input_ids.copy()
            tokens[position] = token
            sequence = decode(tokenizer, tokens[keep], skip_special_tokens=single,
                              clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            if token not in token_strs:
                token_strs[token] = decode(tokenizer, [token],
                                           clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            row.append((score, token, token_strs[token], sequence))
        results.append(row)
    return results


def output_arrays(results, top_k):
    """The output tensors of one request: ``results`` is one :func:`fill_masks` answer per text."""
    masks = max([len(r) for r in results] + [1])
    shape = (len(results), masks, top_k)
    score = np.zeros(shape, dtype=np.float32)
    token = np.full(shape, -1, dtype=np.int64)
    token_str = np.full(shape, b"", dtype=np.object_)
    sequence = np.full(shape, b"", dtype=np.object_)
    count = np.zeros((len(results), 1), dtype=np.int64)
    for row, text in enumerate(results):
        count[row, 0] = len(text)
        for m, fillers in enumerate(text):
            for j, (s, t, ts, seq) in enumerate(fillers):
                score[row, m, j] = s
                token[row, m, j] = t
                token_str[row, m, j] = ts.encode("utf-8")
                sequence[row, m, j] = seq.encode("utf-8")
    return {"SCORE": score, "TOKEN": token, "TOKEN_STR": token_str, "SEQUENCE": sequence, "COUNT": count}


def check_targets(name, value):
    """``targets``: a JSON list of strings (a KServe request parameter is a scalar), or one string."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        # a JSON list, or one target (as the pipeline takes a str): "the", or "3", which JSON reads as a number
        value = parsed if isinstance(parsed, (list, str)) else value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RequestError(f"request parameter {name} must be a JSON list of strings, got {value!r}")
    if not value:
        raise RequestError(f"request parameter {name} is an empty list; give at least one target (or none at all)")
    return value


class TritonPythonModel(Step):
    config_parameters = {
        "mask_token_id": ("tritonize.mask_token_id", int, None),
        "mask_token": ("tritonize.mask_token", str, ""),
        "pad_token_id": ("tritonize.pad_token_id", int, None),
        "clean_up": ("tritonize.clean_up_tokenization_spaces", bool, False),
        "max_length": ("tritonize.max_length", int, 0),
        "top_k": ("tritonize.top_k", int, DEFAULT_TOP_K),
        "keep_token_id": ("tritonize.keep_token_id", int, None),  # set: LOGITS are [texts, masks, vocab]
    }
    request_parameters = {"top_k": positive_int, "targets": check_targets}

    def setup(self):
        if self.mask_token_id is None:
            raise ValueError(f"{self.name}: tritonize.mask_token_id is not set; re-export the model")
        self.tokenizer = Tokenizer.from_file(self.file("tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.targets = None
        self._resolved = {}  # targets (tuple) -> ids: a load test sends the same ones again and again

    def _target_ids(self, targets):
        key = tuple(targets)
        if key not in self._resolved:
            ids, replaced = target_ids(self.tokenizer, targets)
            for target, token in replaced:
                if pb_utils is not None:
                    shown = f"replaced with {token!r}" if token else "ignored (it has no token)"
                    pb_utils.Logger.log_warn(f"{self.name}: target {target!r} is not in the vocabulary: {shown}")
            if len(self._resolved) > 1024:
                self._resolved.clear()
            self._resolved[key] = ids
        return self._resolved[key]

    def preprocess(self, request):
        return {
            "input_ids": self.tensor(request, "INPUT_IDS"),
            "attention_mask": self.tensor(request, "ATTENTION_MASK"),
            "logits": self.tensor(request, "LOGITS"),
        }

    def forward(self, inputs, top_k, targets):
        ids = None if targets is None else self._target_ids(targets)
        top_k = effective_top_k(top_k, ids, inputs["logits"].shape[-1])
        lengths = inputs["attention_mask"].sum(axis=-1)
        results = []
        for row, input_ids in enumerate(inputs["input_ids"]):
            found = fill_masks(self.tokenizer, input_ids, inputs["logits"][row], self.mask_token_id,
                               self.pad_token_id, top_k, ids, self.clean_up, int(lengths[row]),
                               compact=self.keep_token_id is not None)
            if not found:
                within = f" within its first {self.max_length} tokens" if self.max_length else ""
                raise RequestError(
                    f"input 'TEXT'[{row}] holds no mask token {self.mask_token!r}{within}; put {self.mask_token} "
                    "where the model should fill in a token"
                )
            results.append(found)
        return results, top_k

    def postprocess(self, answer):
        results, top_k = answer
        return output_arrays(results, top_k)
