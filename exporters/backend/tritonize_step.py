"""What every Python-backend step of a tritonize repository shares.

The exporter copies this file next to each step's ``model.py`` (the Python
backend puts a model's version folder on ``sys.path``), so a repository stays
self-contained. It holds what every step does alike, in :class:`Step`, the
base of every step (as transformers' ``Pipeline`` is of every pipeline):

* its own ``config.pbtxt`` parameters, read once and typed
  (``config_parameters``);
* request parameters, validated in one place (``request_parameters`` and
  ``sanitize_parameters``), the export's values as defaults;
* string inputs decoded in one place, with the request's limits (``strings``);
* errors answered with the right Triton error code: anything about the
  request is ``INVALID_ARG`` (the SDK's ``InvalidInput``), one request at a
  time, so that a bad request never fails the others of its batch; anything
  else is ``INTERNAL``, with a message that carries no traceback and no path.

A step's own logic (aggregation, span decoding, pooling ...) lives in plain
functions of numpy arrays, and this module imports without
``triton_python_backend_utils`` (``pb_utils`` is then None), so that logic is
unit-tested without a server (``make test-unit``).
"""

import json
import os
import re

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside a Python-backend stub: the pure logic only (unit tests)
    pb_utils = None

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[\w.+@-]+){2,}")


class RequestError(ValueError):
    """Something is wrong with one request; it alone is refused, with INVALID_ARG."""


def param(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


def int_param(config, key, default=0):
    value = param(config, key)
    return default if value in (None, "", "None") else int(value)


def typed_param(config, key, kind=str, default=None):
    """Parameter ``key`` of ``config`` as ``kind`` (str, int, float, bool, or "json"); ``default`` when unset."""
    value = param(config, key)
    if value in (None, "") or (kind is not str and value == "None"):
        return default
    if kind is bool:
        return value.lower() in ("1", "true", "yes")
    if kind == "json":
        return json.loads(value)
    return kind(value)


def invalid(message):
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)


def internal(step, exc):
    """An INTERNAL error that says what broke, without tracebacks or file paths."""
    text = _PATH.sub("<path>", f"{type(exc).__name__}: {exc}")
    return pb_utils.TritonError(f"{step}: internal error ({text[:500]})", pb_utils.TritonError.INTERNAL)


def error_for(step, exc):
    return invalid(str(exc)) if isinstance(exc, RequestError) else internal(step, exc)


def error_response(step, exc):
    return pb_utils.InferenceResponse(error=error_for(step, exc))


def strings(request, name, max_chars=0):
    """The texts of input ``name``, decoded, each at most ``max_chars`` characters (0: no limit)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"input '{name}' is missing")
    texts = []
    for index, item in enumerate(tensor.as_numpy().reshape(-1)):
        if isinstance(item, bytes):
            try:
                text = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(
                    f"input '{name}'[{index}] is not valid UTF-8: byte 0x{item[exc.start]:02x} at byte "
                    f"{exc.start} ({exc.reason}); send text encoded as UTF-8"
                ) from None
        else:
            text = str(item)
        if max_chars and len(text) > max_chars:
            raise RequestError(
                f"input '{name}'[{index}] has {len(text):,} characters; this model accepts at most "
                f"{max_chars:,} per text (export option --max-text-chars)"
            )
        texts.append(text)
    return texts


def check_windows(windows, name, limit, tokens, per):
    """Refuse an item of ``windows`` (one list of windows per text or pair) that needs more than ``limit``."""
    if not limit:
        return
    for row, item_windows in enumerate(windows):
        if len(item_windows) > limit:
            raise RequestError(
                f"input '{name}'[{row}] needs {len(item_windows)} windows of {tokens} tokens; this model accepts "
                f"at most {limit} per {per} (export option --max-windows)"
            )


def request_parameters(request):
    """The request's parameters as a dict (KServe v2 request parameters)."""
    try:
        given = json.loads(request.parameters() or "{}")
    except ValueError:
        raise RequestError("request parameters are not valid JSON") from None
    if not isinstance(given, dict):
        raise RequestError("request parameters must be a JSON object")
    return given


def respond_each(step, requests, respond):
    """The postprocess steps' loop: ``respond(request)`` for each request; an error fails that request alone."""
    responses = []
    for request in requests:
        try:
            responses.append(respond(request))
        except Exception as exc:  # noqa: BLE001 - the request alone fails, with its code
            responses.append(error_response(step, exc))
    return responses


def encode_per_request(step, requests, read, encode, respond):
    """The tokenizer steps' loop: one tokenizer call for the whole batch, one answer per request.

    ``read(request)`` returns the request's items (its error fails it alone),
    ``encode(items)`` encodes every item of every request at once, and
    ``respond(encodings)`` turns one request's encodings into its response.
    """
    responses = [None] * len(requests)
    batch, owners = [], []
    for index, request in enumerate(requests):
        try:
            items = read(request)
        except Exception as exc:  # noqa: BLE001 - the request alone fails, with its code
            responses[index] = error_response(step, exc)
            continue
        owners.append((index, len(batch), len(items)))
        batch.extend(items)
    if not batch:
        return responses
    try:
        encodings = encode(batch)
    except Exception as exc:  # noqa: BLE001
        for index, _, _ in owners:
            responses[index] = error_response(step, exc)
        return responses
    for index, start, size in owners:
        try:
            responses[index] = respond(encodings[start : start + size])
        except Exception as exc:  # noqa: BLE001
            responses[index] = error_response(step, exc)
    return responses


# -- request parameter checks: each takes (name, value) and returns the value, typed -----------------
def positive_int(name, value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"request parameter {name} must be an integer >= 1, got {value!r}")
    return value


def flag(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise RequestError(f"request parameter {name} must be true or false, got {value!r}")


def one_of(*choices):
    def check(name, value):
        if value not in choices:
            raise RequestError(f"request parameter {name}={value!r} is not one of {', '.join(map(str, choices))}")
        return value
    return check


def string_list(name, value):
    """A list of strings, or its JSON text (KServe request parameters are scalars)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RequestError(f"request parameter {name} must be a JSON list of strings, got {value!r}") from None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RequestError(f"request parameter {name} must be a JSON list of strings, got {value!r}")
    return value


class Step:
    """The base of a Python-backend step, in the spirit of transformers' ``Pipeline``.

    A subclass declares what it reads and lets the base do the reading:

    * ``config_parameters``: ``{attribute: (key, kind, default)}``, read once
      from the step's ``config.pbtxt`` into ``self.<attribute>``, typed
      (``typed_param``);
    * ``request_parameters``: ``{name: check}``, what a request may set
      (``positive_int``, ``flag``, ``one_of(...)``, ``string_list``); the
      default of each is the attribute of the same name, the export's value.

    A postprocess step then writes three methods, as a pipeline does:
    ``preprocess(request)`` reads the request's tensors (``self.tensor``,
    ``strings``), ``forward(inputs, **parameters)`` is the task's logic on
    numpy arrays, and ``postprocess(results)`` returns the output tensors as
    ``{name: array}``. ``respond`` chains them for one request (the fused
    layout calls it too), and ``execute`` answers each request of a batch on
    its own: an error fails that request alone, with its code. Tokenizer and
    encoder steps, which work on the whole batch at once, override ``execute``.
    """

    config_parameters = {}
    request_parameters = {}

    def initialize(self, args):
        self.args = args
        self.config = json.loads(args["model_config"])
        self.name = args["model_name"]
        self.version_dir = os.path.join(args["model_repository"], args["model_version"])
        for attribute, (key, kind, default) in self.config_parameters.items():
            setattr(self, attribute, typed_param(self.config, key, kind, default))
        self.setup()

    def setup(self):
        """What the step builds once its parameters are read (a tokenizer, a session ...)."""

    def file(self, name):
        """A file the exporter wrote beside this step's model.py."""
        return os.path.join(self.version_dir, name)

    def sanitize_parameters(self, request):
        """The request's parameters, each checked, over the export's defaults; others are ignored
        (an ensemble hands every step the same parameters)."""
        given = request_parameters(request)
        chosen = {name: getattr(self, name, None) for name in self.request_parameters}
        for name, check in self.request_parameters.items():
            if name in given and given[name] is not None:
                chosen[name] = check(name, given[name])
        return chosen

    @staticmethod
    def tensor(request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise RequestError(f"input '{name}' is missing")
        return tensor.as_numpy()

    def preprocess(self, request):  # pragma: no cover - every postprocess step has its own
        raise NotImplementedError

    def forward(self, inputs, **parameters):  # pragma: no cover
        raise NotImplementedError

    def postprocess(self, results):  # pragma: no cover
        raise NotImplementedError

    def respond(self, request):
        parameters = self.sanitize_parameters(request)
        outputs = self.postprocess(self.forward(self.preprocess(request), **parameters))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in outputs.items()])

    def execute(self, requests):
        return respond_each(self.name, requests, self.respond)
