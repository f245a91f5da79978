"""The SDK side of text-tagging: what a call sends and how its answer is read (numpy only)."""

from dataclasses import asdict, dataclass
from typing import Any, List, Optional

from tritonize.client.calls import Call, Plan, Request, as_batch, check_model, check_timeout, chunks, require
from tritonize.client.errors import InvalidInput
from tritonize.client.tasks import TaskCodec


@dataclass(frozen=True)
class Tag:
    label: str
    score: float

    def to_dict(self):
        return asdict(self)


class TaggingCodec(TaskCodec):
    task = "text-tagging"

    def call(self, model: str, *, text: Any, threshold: Optional[float] = None,
             timeout: Optional[float] = None) -> Call:
        model, timeout = check_model(model), check_timeout(timeout)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0 <= threshold <= 1):
            raise InvalidInput(f"threshold must be a number in [0, 1], got {threshold!r}")
        texts = as_batch(text, "text")
        parameters = {"threshold": float(threshold)} if threshold is not None else None

        def decode(request: Request, arrays: dict) -> List[Any]:
            results = []
            for row in range(request.size):
                count = int(arrays["COUNT"][row].reshape(-1)[0])
                results.append([Tag(arrays["TAGS"][row, j].decode("utf-8"), float(arrays["SCORES"][row, j]))
                                for j in range(count)])
            return results

        def plan(info, url) -> Plan:
            require(info, self.task, url)
            requests = [Request([("TEXT", texts[a:b])], ("TAGS", "SCORES", "COUNT"), parameters)
                        for a, b in chunks(len(texts), info)]
            return Plan(info.name, requests, decode, single=isinstance(text, str))

        return Call(model, timeout, len(texts), plan)
