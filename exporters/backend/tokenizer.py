"""Tokenizer step: TEXT (BYTES [1]) -> INPUT_IDS, ATTENTION_MASK[, TOKEN_TYPE_IDS, ...].

The fast (Rust) tokenizer from ``tokenizer.json`` encodes every text of every
request that the dynamic batcher hands over in one ``encode_batch`` call.
Each request's tensors are padded to its own longest sequence (right padding,
which ORT's attention fusion assumes), never to the max length nor to another
request's length: the encoder step schedules rows by their true length.

Two layouts, chosen by the ``tritonize.windows`` parameter:

* plain (text-classification): one sequence per text, truncated at the max
  length; outputs are ``[texts, tokens]``;
* windows (token-classification): a text longer than the max length is split
  into overlapping windows of ``tritonize.stride`` tokens overlap, exactly as
  ``tokenizer(..., return_overflowing_tokens=True, stride=...)`` splits it;
  outputs are ``[texts, windows, tokens]`` and a padded window has an all-zero
  attention mask. Nothing is truncated. With windows, the step also emits the
  character offsets and the special-tokens mask that the postprocess needs.

Limits, refused with INVALID_ARG before any model work, the request alone:
``tritonize.max_text_chars`` characters per text and ``tritonize.max_windows``
windows per text (0: no limit).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tritonize_step import RequestError, check_windows, encode_per_request, int_param, param, strings


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.name = args["model_name"]
        self.tokenizer = Tokenizer.from_file(os.path.join(version_dir, "tokenizer.json"))
        self.max_length = int_param(config, "tritonize.max_length")
        self.pad_id = int_param(config, "tritonize.pad_token_id", 0)
        self.windows = param(config, "tritonize.windows", "0") == "1"
        self.stride = int_param(config, "tritonize.stride", 0)
        self.max_chars = int_param(config, "tritonize.max_text_chars", 0)
        self.max_windows = int_param(config, "tritonize.max_windows", 0)
        multiple = int_param(config, "tritonize.pad_to_multiple_of", 0)
        self.pad_to_multiple_of = multiple if multiple > 0 else None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length, stride=self.stride)
        self.output_names = [output["name"] for output in config["output"]]
        self.text_input = config["input"][0]["name"]

    def _length(self, longest):
        if not self.pad_to_multiple_of:
            return longest
        # fixed length buckets, so that a native backend can batch requests
        rounded = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return min(self.max_length, rounded)

    def execute(self, requests):
        return self.tokenize(requests, self._response)

    def tokenize(self, requests, respond):
        """``respond(windows)`` of each request (an error response for a request that fails)."""
        return encode_per_request(
            self.name, requests,
            read=lambda request: strings(request, self.text_input, self.max_chars),
            encode=self._encode,
            respond=respond,
        )

    def _encode(self, texts):
        # one list of windows per text (a single window when nothing overflows)
        encodings = self.tokenizer.encode_batch(texts)
        return [[e] + list(e.overflowing) if self.windows else [e] for e in encodings]

    def _response(self, windows):
        arrays = self.arrays(windows)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in arrays.items()])

    def arrays(self, windows):
        """One request's tensors, padded to its own longest window: output name -> array."""
        if not windows:
            raise RequestError(f"input '{self.text_input}' holds no text; send at least one")
        check_windows(windows, self.text_input, self.max_windows, self.max_length, "text")
        length = self._length(max(len(w.ids) for ws in windows for w in ws))
        count = max(len(ws) for ws in windows)
        shape = (len(windows), count, length)
        wanted = set(self.output_names)  # only what the model's config asks for (classification: no masks)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64) if "TOKEN_TYPE_IDS" in wanted else None
        special = np.ones(shape, dtype=np.int64) if "SPECIAL_TOKENS_MASK" in wanted else None
        offsets = np.zeros(shape + (2,), dtype=np.int64) if "OFFSETS" in wanted else None
        for row, text_windows in enumerate(windows):
            for column, window in enumerate(text_windows):
                n = len(window.ids)
                ids[row, column, :n] = window.ids
                mask[row, column, :n] = 1
                if types is not None:
                    types[row, column, :n] = window.type_ids
                if special is not None:
                    special[row, column, :n] = window.special_tokens_mask
                if offsets is not None:
                    offsets[row, column, :n] = window.offsets
        arrays = {
            "INPUT_IDS": ids,
            "ATTENTION_MASK": mask,
            "TOKEN_TYPE_IDS": types,
            "SPECIAL_TOKENS_MASK": special,
            "OFFSETS": offsets,
        }
        if not self.windows:
            arrays = {name: None if array is None else array[:, 0] for name, array in arrays.items()}
        return {name: arrays[name] for name in self.output_names}
