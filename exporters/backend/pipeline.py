"""The fused layout: tokenizer, encoder and postprocess steps in one Python-backend stub.

The ensemble NAME keeps its tensors; its one step, ``NAME_pipeline``, runs the
very step classes of the three-model layout, copied beside this file as
``tokenizer_step.py``, ``encoder_step.py`` and ``postprocess_step.py``, each
initialised with its own config (``steps.json``, written at export). What it
saves is two stub hops per request, each an IPC round trip through shared
memory and a share of the two cores (benchmarks/serving.py measures both
layouts side by side).

How a request goes through:

1. ``execute`` tokenizes every request of the batch in one call (the tokenizer
   step's own code); a request that fails a limit is answered alone, with its
   error code.
2. The others go to the encoder step's token-budget scheduler as they are,
   the tokenizer's tensors standing in for the inputs.
3. When the scheduler has run every row of a request, the postprocess step's
   code turns the logits into the answer, which goes out through the
   request's response sender. A postprocess thread does that work, so the
   scheduler starts its next ONNX Runtime run at once (ORT releases the GIL).
"""

import json
import os
import queue
import threading


from encoder_step import TritonPythonModel as EncoderStep
from postprocess_step import TritonPythonModel as PostprocessStep
from tokenizer_step import TritonPythonModel as TokenizerStep
from tritonize_step import error_response, pb_utils


class LocalTensor:
    """A tensor that stays in this process: what ``pb_utils.Tensor`` offers a step, without the copy into
    shared memory that a ``pb_utils.Tensor`` costs (only the final answer needs one)."""

    __slots__ = ("_name", "_array")

    def __init__(self, name, array):
        self._name, self._array = name, array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class LocalRequest:
    """A request as a step sees it: the real request's parameters and sender, with other input tensors."""

    def __init__(self, request, tensors):
        self.request = request
        self.tensors = tensors

    def inputs(self):
        return self.tensors

    def parameters(self):
        return self.request.parameters()

    def get_response_sender(self):
        return self.request.get_response_sender()


class FusedEncoder(EncoderStep):
    """The encoder step whose finished requests go to the postprocess, not out."""

    def _deliver(self, job, arrays):
        self.on_done(job, arrays)


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(version_dir, "steps.json"), encoding="utf-8") as handle:
            steps = json.load(handle)
        self.name = args["model_name"]

        def step_args(role):
            return {**args, "model_config": json.dumps(steps[role])}

        self.tokenizer = TokenizerStep()
        self.tokenizer.initialize(step_args("tokenizer"))
        self.postprocess = PostprocessStep()
        self.postprocess.initialize(step_args("postprocess"))
        self.encoder = FusedEncoder()
        self.encoder.on_done = self._encoded
        self.encoder.initialize(step_args("encoder"))
        self.encoder.name = self.name  # errors name the model the client called
        self.tokenizer.name = self.postprocess.name = self.name
        self.finished = queue.SimpleQueue()
        self.finisher = threading.Thread(target=self._finish_loop, name=f"{self.name}-postprocess", daemon=True)
        self.finisher.start()

    def execute(self, requests):
        tokenized = self.tokenizer.tokenize(requests, self.tokenizer.arrays)
        ready = []
        for request, arrays in zip(requests, tokenized):
            if not isinstance(arrays, dict):  # an error response: this request alone fails
                request.get_response_sender().send(arrays, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            tensors = request.inputs() + [LocalTensor(name, array) for name, array in arrays.items()]
            ready.append(LocalRequest(request, tensors))
        if ready:
            self.encoder.execute(ready)
        return None

    def _encoded(self, job, arrays):
        """The scheduler's thread: every row of ``job`` is done. The postprocess thread takes it from here."""
        self.finished.put((job, arrays))

    def _finish_loop(self):
        while True:
            item = self.finished.get()
            if item is None:
                return
            job, arrays = item
            tensors = [LocalTensor(name, array) for name, array in arrays.items()]
            local = LocalRequest(job.request.request, job.request.tensors + tensors)
            try:
                response = self.postprocess.respond(local)
            except Exception as exc:  # noqa: BLE001 - the request alone fails, with its code
                response = error_response(self.name, exc)
            self.encoder._send(job, response)

    def finalize(self):
        self.encoder.finalize()
        self.finished.put(None)
        self.finisher.join(timeout=30)
