"""Tokenizer step: TEXT (BYTES [1]) -> INPUT_IDS, ATTENTION_MASK[, TOKEN_TYPE_IDS, ...].

The fast (Rust) tokenizer from ``tokenizer.json`` encodes every text of every
request that the dynamic batcher hands over in one ``encode_batch`` call.
Each request's tensors are padded to its own longest sequence (right padding,
which ORT's attention fusion assumes), never to the max length nor to another
request's length: the encoder step schedules rows by their true length.

Two layouts, chosen by the ``tritonize.windows`` parameter:

* plain (text-classification): one sequence per text, truncated at the max
  length; outputs are ``[texts, tokens]``. A request that also carries the
  optional ``TEXT_PAIR`` (one second text per text) is encoded as sentence
  pairs, as ``tokenizer(text=..., text_pair=..., truncation=True,
  max_length=...)`` does in ``pipeline("text-classification")``: segment ids
  set, the longer of the two cut first (``longest_first``); an empty pair
  is no pair, as there. Pairs and single texts of one batch go through the
  same ``encode_batch`` call, each request as it came;
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

import numpy as np
from tokenizers import Tokenizer

from tritonize_step import RequestError, Step, check_windows, encode_per_request, pb_utils, strings


class TritonPythonModel(Step):
    config_parameters = {
        "max_length": ("tritonize.max_length", int, 0),
        "pad_id": ("tritonize.pad_token_id", int, 0),
        "windows": ("tritonize.windows", bool, False),
        "stride": ("tritonize.stride", int, 0),
        "max_chars": ("tritonize.max_text_chars", int, 0),
        "max_windows": ("tritonize.max_windows", int, 0),
        "pad_to_multiple_of": ("tritonize.pad_to_multiple_of", int, 0),
    }

    def setup(self):
        self.tokenizer = Tokenizer.from_file(self.file("tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length, stride=self.stride)
        self.output_names = [output["name"] for output in self.config["output"]]
        self.text_input = self.config["input"][0]["name"]
        # only a step whose config declares the optional TEXT_PAIR reads one (text-classification)
        self.pair_input = next((i["name"] for i in self.config["input"] if i["name"] == "TEXT_PAIR"), None)

    def _length(self, longest):
        if self.pad_to_multiple_of <= 0:
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
            read=self._read,
            encode=self._encode,
            respond=respond,
        )

    def _read(self, request):
        """The request's texts; with a TEXT_PAIR, (text, pair) tuples, which ``encode_batch`` encodes as pairs."""
        texts = strings(request, self.text_input, self.max_chars)
        if self.pair_input is None or pb_utils.get_input_tensor_by_name(request, self.pair_input) is None:
            return texts
        pairs = strings(request, self.pair_input, self.max_chars)
        if len(pairs) != len(texts):
            raise RequestError(
                f"input '{self.pair_input}' holds {len(pairs)} texts and '{self.text_input}' {len(texts)}; "
                f"send one '{self.pair_input}' per '{self.text_input}' (or none, for single texts)"
            )
        # an empty pair is the text alone, as in the pipeline: its tokenizer call (one text, not a batch)
        # encodes text_pair="" as no pair at all
        return [(text, pair) if pair else text for text, pair in zip(texts, pairs)]

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
