"""Tokenizer step for question-answering: QUESTION, CONTEXT -> windows of the pair.

Each (question, context) pair is encoded as ``pipeline("question-answering")``
encodes it with a fast tokenizer: question first, the context truncated
``only_second`` at ``max_seq_len`` with ``doc_stride`` tokens of overlap, so a
long context becomes several windows and none of it is dropped. All pairs of
all requests that the dynamic batcher hands over are encoded in one
``encode_batch`` call; each request's tensors are padded to its own longest
window only.

Outputs are ``[pairs, windows, tokens]``; a padded window has an all-zero
attention mask. Besides the encoder's inputs, the step emits what the
postprocess needs to turn token spans back into character spans of the
context: offsets, word ids, sequence ids, and ``P_MASK`` (1 = cannot be part
of an answer: question, special tokens, padding; the CLS token stays 0).

Refused with INVALID_ARG, the request alone and before any model work: an
empty question or context (as the pipeline refuses them), a question longer
than ``max_question_len`` tokens, a text over ``tritonize.max_text_chars``
characters, a pair that needs more than ``tritonize.max_windows`` windows.
"""

import numpy as np
from tokenizers import Tokenizer

from tritonize_step import RequestError, Step, check_windows, encode_per_request, pb_utils, strings


class TritonPythonModel(Step):
    config_parameters = {
        "max_seq_len": ("tritonize.max_length", int, 0),
        "doc_stride": ("tritonize.doc_stride", int, 0),
        "max_question_len": ("tritonize.max_question_len", int, 0),
        "pad_id": ("tritonize.pad_token_id", int, 0),
        "max_chars": ("tritonize.max_text_chars", int, 0),
        "max_windows": ("tritonize.max_windows", int, 0),
        "cls_id": ("tritonize.cls_token_id", int, None),
    }

    def setup(self):
        self.tokenizer = Tokenizer.from_file(self.file("tokenizer.json"))
        self.question_tokenizer = Tokenizer.from_file(self.file("tokenizer.json"))
        self.question_tokenizer.no_truncation()
        self.question_tokenizer.no_padding()
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(
            max_length=self.max_seq_len, stride=self.doc_stride, strategy="only_second"
        )
        self.output_names = [output["name"] for output in self.config["output"]]

    def _pairs(self, request):
        questions = strings(request, "QUESTION", self.max_chars)
        contexts = strings(request, "CONTEXT", self.max_chars)
        if len(questions) != len(contexts):
            raise RequestError(
                f"inputs 'QUESTION' and 'CONTEXT' must hold as many texts: {len(questions)} vs {len(contexts)}"
            )
        if not questions:
            raise RequestError("inputs 'QUESTION' and 'CONTEXT' hold no pair; send at least one")
        for name, texts in (("QUESTION", questions), ("CONTEXT", contexts)):
            for index, text in enumerate(texts):
                if not text:
                    raise RequestError(f"input '{name}'[{index}] is empty; a question and a context are required")
        lengths = [len(e.ids) for e in self.question_tokenizer.encode_batch(questions, add_special_tokens=False)]
        for index, length in enumerate(lengths):
            if length > self.max_question_len:
                raise RequestError(
                    f"input 'QUESTION'[{index}] has {length} tokens; the limit is {self.max_question_len} "
                    "(export option --max-question-len)"
                )
        return list(zip(questions, contexts))

    def execute(self, requests):
        return self.tokenize(requests, self._response)

    def tokenize(self, requests, respond):
        """``respond(windows)`` of each request (an error response for a request that fails)."""
        return encode_per_request(self.name, requests, read=self._pairs, encode=self._encode, respond=respond)

    def _encode(self, pairs):
        return [[e] + list(e.overflowing) for e in self.tokenizer.encode_batch(pairs)]

    def _response(self, windows):
        arrays = self.arrays(windows)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in arrays.items()])

    def arrays(self, windows):
        """One request's tensors: output name -> array."""
        check_windows(windows, "CONTEXT", self.max_windows, self.max_seq_len, "pair")
        length = max(len(w.ids) for ws in windows for w in ws)
        shape = (len(windows), max(len(ws) for ws in windows), length)
        arrays = {
            "INPUT_IDS": np.full(shape, self.pad_id, dtype=np.int64),
            "ATTENTION_MASK": np.zeros(shape, dtype=np.int64),
            "TOKEN_TYPE_IDS": np.zeros(shape, dtype=np.int64),
            "P_MASK": np.ones(shape, dtype=np.int64),
            "WORD_IDS": np.full(shape, -1, dtype=np.int64),
            "SEQUENCE_IDS": np.full(shape, -1, dtype=np.int64),
            "OFFSETS": np.zeros(shape + (2,), dtype=np.int64),
        }
        for row, pair_windows in enumerate(windows):
            for column, window in enumerate(pair_windows):
                n = len(window.ids)
                ids = np.asarray(window.ids, dtype=np.int64)
                sequence_ids = np.array([-1 if s is None else s for s in window.sequence_ids], dtype=np.int64)
                p_mask = (sequence_ids != 1).astype(np.int64)
                if self.cls_id is not None:
                    p_mask[ids == self.cls_id] = 0  # the pipeline keeps CLS (the null answer) unmasked
                arrays["INPUT_IDS"][row, column, :n] = ids
                arrays["ATTENTION_MASK"][row, column, :n] = 1
                arrays["TOKEN_TYPE_IDS"][row, column, :n] = window.type_ids
                arrays["P_MASK"][row, column, :n] = p_mask
                arrays["WORD_IDS"][row, column, :n] = [-1 if w is None else w for w in window.word_ids]
                arrays["SEQUENCE_IDS"][row, column, :n] = sequence_ids
                arrays["OFFSETS"][row, column, :n] = window.offsets
        return {name: arrays[name] for name in self.output_names}
