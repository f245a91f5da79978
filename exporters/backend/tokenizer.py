"""Tokenizer step: TEXT (BYTES [1]) -> INPUT_IDS, ATTENTION_MASK[, TOKEN_TYPE_IDS].

The fast (Rust) tokenizer from ``tokenizer.json`` encodes every text of every
request that the dynamic batcher hands over in one ``encode_batch`` call,
truncates at the exported max length, and pads to the longest sequence of the
batch (right padding, which ORT's attention fusion assumes). Requests that
land in different tokenizer batches may differ in length; the encoder step
accepts ragged batches and pads them together.
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
        multiple = int(_param(config, "tritonize.pad_to_multiple_of", "0"))
        self.pad_to_multiple_of = multiple if multiple > 0 else None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.output_names = [output["name"] for output in config["output"]]
        self.text_input = config["input"][0]["name"]

    def _texts(self, request):
        array = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy()
        texts = []
        for item in array.reshape(-1):
            if isinstance(item, bytes):
                texts.append(item.decode("utf-8"))
            else:
                texts.append(str(item))
        return texts

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
        if batch:
            encodings = self.tokenizer.encode_batch(batch)
            length = max(len(e.ids) for e in encodings)
            if self.pad_to_multiple_of:
                # fixed length buckets, so that a native backend can batch requests
                rounded = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
                length = min(self.max_length, rounded)
            ids = np.full((len(batch), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), length), dtype=np.int64)
            types = np.zeros((len(batch), length), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                n = len(encoding.ids)
                ids[row, :n] = encoding.ids
                mask[row, :n] = 1
                types[row, :n] = encoding.type_ids
            arrays = {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": types}
            for index, start, count in owners:
                tensors = [
                    pb_utils.Tensor(name, arrays[name][start : start + count])
                    for name in self.output_names
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
