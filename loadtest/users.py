"""Locust users that call served models through the tritonize SDK over gRPC.

Importing this module imports Locust, which monkey-patches the standard library
for gevent, and switches gRPC to gevent (``grpc.experimental.gevent.init_gevent``)
before any channel exists, as Locust's own gRPC example does. Import it first,
in a process of its own (``tritonize loadtest`` does).

One user class per installed task plugin (the registry, :mod:`tritonize.tasks`);
each Locust request is one SDK call (``Client.predict``), reported with
``request_type="grpc"`` and ``name="TASK:MODEL"`` (e.g. ``text-classification:sentiment``).
Which models, which inputs and which pacing are set by :func:`configure` from
a :class:`Plan`, on the master and on every worker alike.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any, Callable, ClassVar, Dict, List, Optional, Type

import locust  # noqa: F401  (monkey-patches for gevent before grpc creates anything)
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import User, between, constant, constant_throughput, task  # noqa: E402
from locust.user.task import LOCUST_STATE_STOPPING  # noqa: E402

from tritonize import tasks  # noqa: E402
from tritonize.client import Client, RetryPolicy  # noqa: E402
from tritonize.client.tasks import codec_for  # noqa: E402
from tritonize.loadtest.plan import Plan  # noqa: E402
from tritonize.loadtest.samples import Sample  # noqa: E402

REQUEST_TYPE = "grpc"


class TritonizeUser(User):
    """A simulated application: one SDK ``Client`` (one gRPC channel), one call per task run."""

    abstract = True
    task_name: ClassVar[str] = ""
    models: ClassVar[List[str]] = []
    samples: ClassVar[List[Sample]] = []
    call_timeout: ClassVar[float] = 10.0
    attempts: ClassVar[int] = 1
    seed: ClassVar[int] = 0
    _numbers: ClassVar[Any] = itertools.count()
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.number = next(TritonizeUser._numbers)
        self.random = random.Random(self.seed * 1_000_003 + self.number)
        self.client: Optional[Client] = None

    def on_start(self) -> None:
        if not self.models or not self.samples:
            raise RuntimeError(f"{type(self).__name__} started without models or samples: no plan was applied")
        self.client = Client(self.host, timeout=self.call_timeout,
                             retry=RetryPolicy(attempts=max(1, self.attempts)))
        for model in self.models:  # learn each model's config now, not inside a timed request
            self.client.model_info(model)

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def stop(self, force: bool = False) -> bool:
        """Stop gracefully, also while waiting: never kill a user that may be about to call.

        Locust kills a waiting user at once; but a kill lands a moment later, and a
        user whose wait just ended may by then have sent its next request, which
        Triton serves and Locust never records. Here a waiting user is only marked
        as stopping: it leaves when its wait ends, before calling again. A running
        call finishes (within its deadline, ``--timeout``) and is recorded.
        """
        if force or self._state is None:  # not started yet: nothing can be in flight
            return bool(super().stop(force=True))
        self._state = LOCUST_STATE_STOPPING
        return False

    def call(self, model: str, sample: Sample) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @task
    def request(self) -> None:
        assert self.client is not None
        model = self.models[self.random.randrange(len(self.models))]
        sample = self.samples[self.random.randrange(len(self.samples))]
        exception: Optional[BaseException] = None
        start = time.perf_counter()
        try:
            self.call(model, sample)
        except Exception as exc:  # noqa: BLE001 - every failure is a failed request, reported to Locust
            exception = exc
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=f"{self.task_name}:{model}",
            response_time=elapsed_ms,
            response_length=0,
            exception=exception,
            context={"model": model, "task": self.task_name, "length": sample.length},
        )


class TaskUser(TritonizeUser):
    """Calls its task's models through ``Client.predict``, the sample's inputs as its task plugin takes them."""

    abstract = True

    def call(self, model: str, sample: Sample) -> Any:
        assert self.client is not None
        info = self.client.model_info(model)  # learned in on_start: no request here
        arguments = codec_for(self.task_name).sample_arguments(info, sample.fields)
        return self.client.predict(model, **arguments)


def _class_name(task_name: str) -> str:
    return "".join(part.capitalize() for part in task_name.replace("_", "-").split("-")) + "User"


#: one user class per installed task plugin (``TextClassificationUser`` ...)
USER_CLASSES: Dict[str, Type[TritonizeUser]] = {
    name: type(_class_name(name), (TaskUser,), {"abstract": False, "task_name": name, "__module__": __name__})
    for name in tasks.names()
}


def wait_time_for(plan: Plan) -> Callable[..., float]:
    if plan.pacing == "open":
        return constant_throughput(plan.rps_per_user)  # type: ignore[no-any-return]
    if plan.think_max <= 0:
        return constant(0)  # type: ignore[no-any-return]
    return between(plan.think_min, plan.think_max)  # type: ignore[no-any-return]


def configure(plan: Plan) -> List[Type[TritonizeUser]]:
    """Apply ``plan`` to the user classes; return those that have models to call."""
    active = []
    for task_name, cls in USER_CLASSES.items():
        models = list(plan.models.get(task_name, []))
        cls.models = models
        cls.samples = [Sample.from_dict(s) for s in plan.samples.get(task_name, [])]
        cls.host = plan.host
        cls.call_timeout = plan.timeout
        cls.attempts = plan.attempts
        cls.seed = plan.seed
        cls.wait_time = wait_time_for(plan)  # type: ignore[method-assign]
        cls.weight = int(plan.weights.get(task_name, 1)) if models else 0
        if models:
            active.append(cls)
    return active
