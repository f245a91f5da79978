"""What every Python-backend step of a tritonize repository shares.

The exporter copies this file next to each step's ``model.py`` (the Python
backend puts a model's version folder on ``sys.path``), so a repository stays
self-contained. It holds the three things every step does alike:

* reading its own ``config.pbtxt`` parameters;
* decoding string inputs, with the request's limits;
* answering errors with the right Triton error code: anything about the
  request is ``INVALID_ARG`` (the SDK's ``InvalidInput``), one request at a
  time, so that a bad request never fails the others of its batch; anything
  else is ``INTERNAL``, with a message that carries no traceback and no path.
"""

import json
import re

import triton_python_backend_utils as pb_utils

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[\w.+@-]+){2,}")


class RequestError(ValueError):
    """Something is wrong with one request; it alone is refused, with INVALID_ARG."""


def param(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


def int_param(config, key, default=0):
    value = param(config, key)
    return default if value in (None, "", "None") else int(value)


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
