"""Tokenizer step: TEXT (BYTES [1]) -> INPUT_IDS, ATTENTION_MASK[, TOKEN_TYPE_IDS, ...].

The fast (Rust) tokenizer from ``tokenizer.json`` encodes every text of every
request that the dynamic batcher hands over in one ``encode_batch`` call and
pads to the longest sequence of the batch (right padding, which ORT's
attention fusion assumes), not to the max length. Requests that land in
different tokenizer batches may differ in length; the encoder step accepts
ragged batches and pads them together.

Two layouts, chosen by the ``tritonize.windows`` parameter:

* plain (text-classification): one sequence per text, truncated at the max
  length; outputs are ``[texts, tokens]``;
* windows (token-classification): a text longer than the max length is split
  into overlapping windows of ``tritonize.stride`` tokens overlap, exactly as
  ``tokenizer(..., return_overflowing_tokens=True, stride=...)`` splits it;
  outputs are ``[texts, windows, tokens]`` and a padded window has an all-zero
  attention mask. Nothing is truncated. With windows, the step also emits the
  character offsets and the special-tokens mask that the postprocess needs.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def _param(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(version_dir, "tokenizer.json"))
        self.max_length = int(_param(config, "tritonize.max_length"))
        self.pad_id = int(_param(config, "tritonize.pad_token_id", "0"))
        self.windows = _param(config, "tritonize.windows", "0") == "1"
        self.stride = int(_param(config, "tritonize.stride", "0"))
        multiple = int(_param(config, "tritonize.pad_to_multiple_of", "0"))
        self.pad_to_multiple_of = multiple if multiple > 0 else None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length, stride=self.stride)
        self.output_names = [output["name"] for output in config["output"]]
        self.text_input = config["input"][0]["name"]

    def _texts(self, request):
        array = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy()
        texts = []
        for item in array.reshape(-1):
            texts.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        return texts

    def _length(self, longest):
        if not self.pad_to_multiple_of:
            return longest
        # fixed length buckets, so that a native backend can batch requests
        rounded = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return min(self.max_length, rounded)

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, owners = [], []
        for index, request in enumerate(requests):
            try:
                texts = self._texts(request)
            except UnicodeDecodeError as exc:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"input '{self.text_input}' is not valid UTF-8: {exc}")
                )
                continue
            owners.append((index, len(batch), len(texts)))
            batch.extend(texts)
        if not batch:
            return responses
        encodings = self.tokenizer.encode_batch(batch)
        # one list of windows per text (a single window when nothing overflows)
        windows = [[e] + list(e.overflowing) if self.windows else [e] for e in encodings]
        length = self._length(max(len(w.ids) for ws in windows for w in ws))
        count = max(len(ws) for ws in windows)
        shape = (len(batch), count, length)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        special = np.ones(shape, dtype=np.int64)
        offsets = np.zeros(shape + (2,), dtype=np.int64)
        for row, text_windows in enumerate(windows):
            for column, window in enumerate(text_windows):
                n = len(window.ids)
                ids[row, column, :n] = window.ids
                mask[row, column, :n] = 1
                types[row, column, :n] = window.type_ids
                special[row, column, :n] = window.special_tokens_mask
                if self.windows:
                    offsets[row, column, :n] = window.offsets
        arrays = {
            "INPUT_IDS": ids,
            "ATTENTION_MASK": mask,
            "TOKEN_TYPE_IDS": types,
            "SPECIAL_TOKENS_MASK": special,
            "OFFSETS": offsets,
        }
        if not self.windows:
            arrays = {name: array[:, 0] for name, array in arrays.items()}
        for index, start, size in owners:
            tensors = [
                pb_utils.Tensor(name, arrays[name][start : start + size]) for name in self.output_names
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
