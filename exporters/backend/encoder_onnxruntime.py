"""Encoder step: ONNX Runtime inside the Python backend, behind a token-budget scheduler.

Every request holds ``[texts, tokens]`` or ``[texts, windows, tokens]``; each
sequence with a non-empty attention mask is a *row*. ``execute`` checks each
request on its own (ids inside the vocabulary, lengths inside the position
limit, shapes that agree: else INVALID_ARG for that request alone) and hands
its rows to one scheduler thread, which answers through the request's
response sender as soon as all of its rows are done.

The scheduler works as TEI's ``--max-batch-tokens`` does: ``execute`` only
queues a request's rows and returns (Triton hands the next batch over at
once), and one thread runs ONNX Runtime on runs of at most
``max_batch_tokens`` *padded* tokens, each padded only to its own longest
row. Every run takes rows from the requests with the fewest tokens left
first, and every other run starts with the oldest request (with half the
budget when others wait), so nothing starves. So the memory of one run is
bounded by the budget, never by the request; a long text never pads the
short ones; and a short request that arrives while a 256-window text is being
computed waits for one run, not for the text.

Pending work is bounded too (twice ``max_batch_size`` requests): past it,
``execute`` waits, Triton's queue fills, and its queue policy refuses new
requests (UNAVAILABLE, which the SDK retries with backoff).
"""

import json
import os
import threading
import time
from collections import deque

import numpy as np
import onnxruntime as ort

from tritonize_step import error_for, int_param, internal, param, pb_utils, RequestError

# CPU: small runs are faster per token here and pad less (benchmarks/serving.py, encoder_memory.py); the
# budget is never below the model's max length, so on a CPU it is usually one full-length row per run
DEFAULT_MAX_BATCH_TOKENS = {"CPU": 512, "GPU": 16384}


class Job:
    """One request: its live rows, their true lengths, and the outputs being filled in."""

    def __init__(self, request, arrays, shape, rows, lengths, outputs):
        self.request = request
        self.sender = request.get_response_sender()
        self.arrays = arrays  # name -> [rows_total, width]
        self.shape = shape  # the request's own shape, e.g. [texts, windows, tokens]
        self.rows = rows  # indices (into rows_total) of the rows to compute
        self.lengths = lengths  # true length of each of those rows
        self.outputs = outputs  # name -> zeros [rows_total(, width), ...]
        self.keep = None  # per row: the token positions its per-token outputs keep (tritonize.keep_token_id)
        # rows not yet run, shortest first (so that a run's width grows slowly), and their tokens
        self.todo = deque(sorted(range(len(rows)), key=lambda k: int(lengths[k])))
        self.tokens_left = int(lengths.sum())
        self.done = 0  # rows computed so far
        self.failed = False
        self.sent = False
        self.arrived = time.monotonic()

    def take(self):
        k = self.todo.popleft()
        self.tokens_left -= int(self.lengths[k])
        return k


class BlsSession:
    """The encoder as another Triton model (native ``onnxruntime_onnx`` or ``tensorrt_plan``): each run of
    the scheduler is one BLS request of ``[rows, tokens]`` tensors, named as the ONNX graph's inputs."""

    def __init__(self, model):
        self.model = model

    def run(self, names, feed):
        request = pb_utils.InferenceRequest(
            model_name=self.model,
            inputs=[pb_utils.Tensor(name, array) for name, array in feed.items()],
            requested_output_names=list(names),
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"encoder model '{self.model}': {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in names]


class RunMetrics:
    """Triton custom metrics of the scheduler's ONNX Runtime runs (on Triton's /metrics endpoint)."""

    FAMILIES = {
        "runs": ("tritonize_encoder_runs_total", "ONNX Runtime runs of the encoder step", "COUNTER"),
        "rows": ("tritonize_encoder_rows_total", "sequences computed by the encoder step", "COUNTER"),
        "tokens": ("tritonize_encoder_tokens_total", "real (attended) tokens computed", "COUNTER"),
        "padded": ("tritonize_encoder_padded_tokens_total", "padded tokens computed (rows x width)", "COUNTER"),
        "largest": ("tritonize_encoder_largest_run_tokens", "most padded tokens of one run since load", "GAUGE"),
    }

    def __init__(self, model, instance):
        labels = {"model": model, "instance": instance}
        self.families, self.metrics = {}, {}  # a family must outlive its metrics: keep both
        for key, (name, description, kind) in self.FAMILIES.items():
            family = pb_utils.MetricFamily(name=name, description=description,
                                           kind=getattr(pb_utils.MetricFamily, kind))
            self.families[key] = family
            self.metrics[key] = family.Metric(labels=labels)
        self.largest_value = 0

    def record(self, rows, width, tokens):
        self.metrics["runs"].increment(1)
        self.metrics["rows"].increment(rows)
        self.metrics["tokens"].increment(tokens)
        self.metrics["padded"].increment(rows * width)
        if rows * width > self.largest_value:
            self.largest_value = rows * width
            self.metrics["largest"].set(self.largest_value)


def intra_op_threads(config):
    """ORT intra-op threads of one instance: ``tritonize serve --threads``, the export's, or cores / instances."""
    given = os.environ.get("TRITONIZE_INTRA_OP_THREADS") or param(config, "tritonize.intra_op_threads", "auto")
    if given not in ("", "auto", "0"):
        return int(given)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
    return max(1, cores // instances)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.name = args["model_name"]
        # Triton tensor name -> ONNX tensor name
        self.input_map = json.loads(param(config, "tritonize.encoder_inputs"))
        self.output_map = json.loads(param(config, "tritonize.encoder_outputs"))
        self.pad_id = int_param(config, "tritonize.pad_token_id", 0)
        self.vocab_size = int_param(config, "tritonize.vocab_size", 0)
        self.type_vocab_size = int_param(config, "tritonize.type_vocab_size", 0)
        self.max_positions = int_param(config, "tritonize.max_positions", 0)
        self.max_rows = int_param(config, "tritonize.max_rows", 0)
        # per-token outputs keep only the positions of this token (fill-mask: [rows, masks, vocab], not
        # [rows, tokens, vocab]: a 512-token text of a 30k vocabulary would hold 62 MB of logits)
        keep = param(config, "tritonize.keep_token_id", "")
        self.keep_token_id = int(keep) if keep not in ("", "None") else None
        self.native = param(config, "tritonize.encoder_model", "")  # BLS: a native encoder model runs it
        if self.native:  # its budget is that model's device's
            kind = "GPU" if param(config, "tritonize.device", "cpu").startswith("cuda") else "CPU"
        else:
            kind = "GPU" if args.get("model_instance_kind") == "GPU" else "CPU"
        self.max_run_rows = int_param(config, "tritonize.max_run_rows", 0)  # 0: no limit but the budget
        budget = param(config, "tritonize.max_batch_tokens", "auto")
        if budget in ("", "auto"):  # at least one full sequence per run
            self.budget = max(DEFAULT_MAX_BATCH_TOKENS[kind], self.max_positions)
        else:
            self.budget = int(budget)
        if self.budget <= 0:  # no budget: everything pending runs as one batch (for comparison only)
            self.budget = 1 << 62
        self.rank = len(config["input"][0]["dims"]) + 1  # with the batch dimension

        if self.native:
            self.session = BlsSession(self.native)
            self.threads = 0
            pb_utils.Logger.log_info(f"{self.name}: the encoder runs in Triton model '{self.native}' (BLS)")
            self.layout = {name: (bool(per_token), tuple(tail))
                           for name, (per_token, tail) in json.loads(param(config, "tritonize.encoder_layout")).items()}
        else:
            self._open_session(config, version_dir, kind, args)
        self.tails = {}  # ONNX output -> trailing dims learned from the first run
        try:
            self.metrics = RunMetrics(self.name, args.get("model_instance_name", self.name))
        except Exception:  # noqa: BLE001 - a server started with metrics off
            self.metrics = None

        self.pending = []  # jobs with rows not yet computed, in arrival order
        self.turn = 0  # runs so far: every other one starts with the oldest job
        self.max_pending = 2 * max(1, int(config.get("max_batch_size", 1)))
        self.lock = threading.Condition()
        self.stopping = False
        self.worker = threading.Thread(target=self._loop, name=f"{self.name}-scheduler", daemon=True)
        self.worker.start()

    def _open_session(self, config, version_dir, kind, args):
        """ONNX Runtime in this process: on the CPU, or on the instance's GPU (never a silent CPU fallback)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = intra_op_threads(config)
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Spinning: ORT's threads spin-wait between the operators of a run (and a little after it)
        # instead of sleeping. On by default: without it every operator pays a thread wake-up, which
        # cost more than the cores it frees for the other steps (benchmarks/serving.py).
        spin = os.environ.get("TRITONIZE_ALLOW_SPINNING") or param(config, "tritonize.allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spin == "0" else "1")
        # Shapes change with every batch: memory patterns would be planned (and kept) per shape. With
        # them off, the arena is bounded by the budget's largest run and keeps ORT's speed; shrinking
        # it after big runs, or no arena, costs speed for little (benchmarks/encoder_memory.py).
        # "tritonize.ort_defaults" = "1" restores ONNX Runtime's defaults.
        options.enable_mem_pattern = param(config, "tritonize.ort_defaults", "0") == "1"
        providers = ["CPUExecutionProvider"]
        if kind == "GPU":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise pb_utils.TritonModelException(
                    f"{self.name}: this instance is KIND_GPU (exported with --device cuda), but this onnxruntime "
                    f"has no CUDAExecutionProvider (it has {', '.join(available)}). Install onnxruntime-gpu "
                    "(pip install 'tritonize[serve-gpu]'), or export with --device cpu"
                )
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(
            os.path.join(version_dir, "model.onnx"), sess_options=options, providers=providers
        )
        if kind == "GPU" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise pb_utils.TritonModelException(
                f"{self.name}: ONNX Runtime could not start its CUDA execution provider on GPU {device} "
                f"(the session runs on {self.session.get_providers()[0]}); is the CUDA/cuDNN runtime that "
                "onnxruntime-gpu needs installed? Refusing to serve a KIND_GPU model on the CPU"
            )
        used = self.session.get_session_options()
        pb_utils.Logger.log_info(
            f"{self.name}: ONNX Runtime session on {self.session.get_providers()[0]}, "
            f"intra_op_num_threads={used.intra_op_num_threads}, "
            f"allow_spinning={used.get_session_config_entry('session.intra_op.allow_spinning')}"
        )
        onnx_inputs = {i.name for i in self.session.get_inputs()}
        self.input_map = {k: v for k, v in self.input_map.items() if v in onnx_inputs}
        # Per output: is its 2nd axis the token axis ([batch, tokens(, labels)]: NER, QA)
        # or not ([batch, labels]: classification), and its fixed trailing dims.
        self.layout = {}
        for output in self.session.get_outputs():
            shape = list(output.shape)
            per_token = len(shape) >= 2 and not isinstance(shape[1], int)
            tail = shape[2:] if per_token else shape[1:]
            self.layout[output.name] = (per_token, tuple(d if isinstance(d, int) else 0 for d in tail))

    # -- requests -------------------------------------------------------------------------
    def execute(self, requests):
        for request in requests:
            try:
                job = self._job(request)
            except Exception as exc:  # noqa: BLE001 - the request alone fails, with its code
                request.get_response_sender().send(
                    pb_utils.InferenceResponse(error=error_for(self.name, exc)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                continue
            if not len(job.rows):  # only empty windows: nothing to compute
                self._finish(job)
                continue
            with self.lock:
                # back-pressure: past max_pending requests, wait (Triton's queue and its policy take over)
                while len(self.pending) >= self.max_pending and not self.stopping:
                    self.lock.wait()
                self.pending.append(job)
                self.lock.notify_all()
        return None

    def _input(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise RequestError(f"input '{name}' is missing")
        return tensor.as_numpy()

    def _job(self, request):
        arrays = {name: self._input(request, name) for name in self.input_map}
        shape = arrays["ATTENTION_MASK"].shape
        for name, array in arrays.items():
            if array.shape != shape:
                raise RequestError(
                    f"inputs 'ATTENTION_MASK' {list(shape)} and '{name}' {list(array.shape)} must have the same shape"
                )
        if len(shape) != self.rank:
            raise RequestError(f"input 'ATTENTION_MASK' has shape {list(shape)}; expected {self.rank} dimensions")
        width = shape[-1]
        if width == 0:
            raise RequestError(
                f"input 'INPUT_IDS' has shape {list(shape)}: no tokens; send at least one token per sequence"
            )
        if self.max_positions and width > self.max_positions:
            raise RequestError(
                f"input 'INPUT_IDS' has {width} tokens per sequence; this encoder takes at most "
                f"{self.max_positions} (the model's max length)"
            )
        flat = {name: a.reshape(-1, width) for name, a in arrays.items()}
        mask = flat["ATTENTION_MASK"]
        if mask.size and ((mask != 0) & (mask != 1)).any():
            raise RequestError("input 'ATTENTION_MASK' must hold only 0 and 1")
        self._check_range(flat["INPUT_IDS"], "INPUT_IDS", self.vocab_size, "vocabulary size")
        if "TOKEN_TYPE_IDS" in flat:
            self._check_range(flat["TOKEN_TYPE_IDS"], "TOKEN_TYPE_IDS", self.type_vocab_size, "type vocabulary size")
        live = mask.any(axis=1)
        rows = np.flatnonzero(live)
        if self.max_rows and len(rows) > self.max_rows:
            raise RequestError(
                f"the request holds {len(rows)} sequences; this encoder takes at most {self.max_rows} per request"
            )
        # true length: up to the last attended token (right padding)
        lengths = (width - np.argmax(mask[rows, ::-1] != 0, axis=1)).astype(np.int64)
        total = mask.shape[0]
        keep = None
        if self.keep_token_id is not None:  # the positions each row keeps, and the widest row's count
            keep = [np.flatnonzero(ids[:n] == self.keep_token_id) if n else np.zeros(0, dtype=np.int64)
                    for ids, n in zip(flat["INPUT_IDS"], (mask != 0).sum(axis=1))]
            width = max([len(k) for k in keep] + [1])
        outputs = {}
        for onnx_name in self.output_map.values():
            per_token, tail = self.layout[onnx_name]
            tail = self.tails.get(onnx_name, tail)
            outputs[onnx_name] = np.zeros((total,) + ((width,) if per_token else ()) + tail, dtype=np.float32)
        job = Job(request, flat, shape, rows, lengths, outputs)
        job.keep = keep
        return job

    @staticmethod
    def _check_range(ids, name, limit, what):
        if not ids.size:
            return
        bad = (ids < 0) | (ids >= limit) if limit else ids < 0
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            bound = f"[0, {limit})" if limit else ">= 0"
            raise RequestError(
                f"input '{name}' holds {int(ids[row, column])} at sequence {row}, position {column}; "
                f"ids must be in {bound} (the model's {what})"
            )

    # -- the scheduler --------------------------------------------------------------------
    def _loop(self):
        while True:
            with self.lock:
                while not self.pending and not self.stopping:
                    self.lock.wait()
                if not self.pending:
                    return
                group = self._pick()
                if not group:  # every pending row is in flight: should not happen, never spin
                    self.lock.wait(0.05)
                    continue
            try:
                self._run(group)
            except Exception as exc:  # noqa: BLE001 - the scheduler never dies
                for job in {id(job): job for job, _ in group}.values():
                    self._fail(job, exc)

    def _pick(self):
        """The rows of the next run: at most ``budget`` padded tokens (one row at least).

        Requests with the fewest tokens left come first, and a run that holds
        rows is topped up only with requests it finishes, so a short request
        waits for the run in progress and then runs with its peers; every other
        run starts with the oldest request (with half the budget when others
        wait), so nothing starves.
        """
        waiting = sorted((j for j in self.pending if j.todo and not j.sent), key=lambda j: (j.tokens_left, j.arrived))
        if not waiting:
            return []
        self.turn += 1
        budget = self.budget
        if len(waiting) > 1 and self.turn % 2 == 0:
            oldest = min(waiting, key=lambda j: j.arrived)
            waiting.remove(oldest)
            waiting.insert(0, oldest)
            budget = max(self.budget // 2, 1)
        group, width = [], 0
        for job in waiting:
            if group:
                # a run that already holds rows is topped up only with requests it finishes: the rows
                # of a long text never slow down the run that answers the short requests
                wider = max(width, int(job.lengths[job.todo[-1]]))
                if (len(group) + len(job.todo)) * wider > budget or self._full(len(group) + len(job.todo)):
                    return group
            while job.todo:
                wider = max(width, int(job.lengths[job.todo[0]]))
                if group and ((len(group) + 1) * wider > budget or self._full(len(group) + 1)):
                    return group
                group.append((job, job.take()))
                width = wider
        return group

    def _full(self, rows):
        """Past the native encoder's max_batch_size (the BLS layout): one BLS request holds at most that."""
        return bool(self.max_run_rows) and rows > self.max_run_rows

    def _run(self, group):
        longest = max(int(job.lengths[k]) for job, k in group)
        feed = {}
        for name, onnx_name in self.input_map.items():
            pad = self.pad_id if name == "INPUT_IDS" else 0
            batch = np.full((len(group), longest), pad, dtype=np.int64)
            for i, (job, k) in enumerate(group):
                n = int(job.lengths[k])
                batch[i, :n] = job.arrays[name][job.rows[k], :n]
            feed[onnx_name] = batch
        names = list(self.output_map.values())
        try:
            results = dict(zip(names, self.session.run(names, feed)))
        except Exception as exc:  # noqa: BLE001 - fail the requests of this group, keep serving
            for job in {id(job): job for job, _ in group}.values():
                self._fail(job, exc)
            return
        if self.metrics is not None:
            self.metrics.record(len(group), longest, sum(int(job.lengths[k]) for job, k in group))
        for i, (job, k) in enumerate(group):
            if job.failed or job.sent:
                continue
            row, n = job.rows[k], int(job.lengths[k])
            for onnx_name, result in results.items():
                per_token, _ = self.layout[onnx_name]
                out = job.outputs[onnx_name]
                if out.shape[1 + int(per_token):] != result.shape[2 if per_token else 1 :]:
                    out = self._grow(job, onnx_name, result)
                if per_token and job.keep is not None:
                    kept = job.keep[row]
                    out[row, : len(kept)] = result[i, kept]
                elif per_token:
                    out[row, :n] = result[i, :n]
                else:
                    out[row] = result[i]
            job.done += 1
            if job.done == len(job.rows):
                self._finish(job)

    def _grow(self, job, onnx_name, result):
        """Outputs whose trailing dims the graph leaves symbolic: learn them from the first run."""
        per_token, _ = self.layout[onnx_name]
        tail = tuple(result.shape[2 if per_token else 1 :])
        self.tails[onnx_name] = tail
        old = job.outputs[onnx_name]
        job.outputs[onnx_name] = np.zeros(old.shape[: 1 + int(per_token)] + tail, dtype=np.float32)
        return job.outputs[onnx_name]

    def _finish(self, job):
        arrays = {}
        for name, onnx_name in self.output_map.items():
            out = job.outputs[onnx_name]
            arrays[name] = out.reshape(tuple(job.shape[:-1]) + out.shape[1:])
        self._deliver(job, arrays)

    def _deliver(self, job, arrays):
        """Every row of ``job`` is done: answer it (the fused layout hands it to its postprocess instead)."""
        self._send(job, pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, array) for name, array in arrays.items()]
        ))

    def _fail(self, job, exc):
        if job.sent:
            return
        job.failed = True
        self._send(job, pb_utils.InferenceResponse(error=internal(self.name, exc)))

    def _send(self, job, response):
        if job.sent:
            return
        job.sent = True
        try:
            job.sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        finally:
            with self.lock:
                if job in self.pending:
                    self.pending.remove(job)
                self.lock.notify_all()

    def finalize(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.worker.join(timeout=30)
