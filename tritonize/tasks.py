"""The task registry: the one place every layer learns which tasks exist.

A task is a plugin registered under the ``tritonize.tasks`` entry point group
(optimum's ``TasksManager`` idea: one registry that every layer reads). The
entry point names a :class:`TaskDefinition`, a small declaration that costs
nothing to import; the heavy parts are named in it by ``"module:attribute"``
and loaded only by the layer that needs them:

* ``exporter``: the :class:`tritonize.exporters.tasks.base.TaskPlugin` that
  ``tritonize export`` uses (it may import torch and transformers);
* ``codec``: the :class:`tritonize.client.tasks.TaskCodec` with which the SDK
  (``Client.predict``, ``tritonize predict``, the load-test users) sends a
  call and decodes its answer (numpy only).

A package outside tritonize adds a task by declaring, in its own
``pyproject.toml``::

    [project.entry-points."tritonize.tasks"]
    my-task = "my_package:TASK"

The built-in tasks register through the same entry points (tritonize's own
pyproject.toml). This module uses the standard library only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Dict, List, Mapping, Tuple

GROUP = "tritonize.tasks"


class UnknownTask(LookupError):
    """No task plugin of that name (or alias) is installed."""


def load_object(reference: str) -> Any:
    """``"package.module:attribute"`` -> the attribute, imported now."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"{reference!r} is not a 'module:attribute' reference")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class TaskDefinition:
    """What a task is, for every layer: its name, its served inputs, and where its parts live.

    ``inputs`` are the ensemble's string inputs, in order; a caller names
    each by its lower-case form (``TEXT`` -> ``text``, ``TEXT_PAIR`` ->
    ``text_pair``), in ``Client.predict``, in load-test data files and in
    ``samples``. ``optional`` lists the inputs that a request may leave out.
    ``samples`` are built-in load-test inputs (a ``length`` key, ``short``,
    ``medium`` or ``long``, is optional); without them, a task whose only
    required input is ``TEXT`` is load-tested with the built-in texts.
    ``parameters`` are the request parameters ``tritonize predict --param``
    accepts (name -> help).
    """

    name: str
    inputs: Tuple[str, ...]
    exporter: str
    codec: str
    optional: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = ()
    summary: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    samples: Tuple[Mapping[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.optional) - set(self.inputs)
        if unknown:
            raise ValueError(f"task {self.name!r}: optional inputs {sorted(unknown)} are not among its inputs")

    @property
    def required(self) -> Tuple[str, ...]:
        return tuple(name for name in self.inputs if name not in self.optional)

    @property
    def keywords(self) -> Tuple[str, ...]:
        """The inputs as a caller names them: ``TEXT_PAIR`` -> ``text_pair``."""
        return tuple(name.lower() for name in self.inputs)

    @property
    def required_keywords(self) -> Tuple[str, ...]:
        return tuple(name.lower() for name in self.required)

    def load_exporter(self) -> Any:
        """A new instance of the task's exporter plugin (imports its module: torch, transformers ...)."""
        return load_object(self.exporter)()

    def load_codec(self) -> Any:
        """The task's SDK codec (numpy only)."""
        codec = load_object(self.codec)
        return codec() if isinstance(codec, type) else codec


@lru_cache(maxsize=1)
def _registered() -> Tuple[Tuple[str, TaskDefinition], ...]:
    found = []
    for ep in entry_points(group=GROUP):
        definition = ep.load()
        if not isinstance(definition, TaskDefinition):
            raise TypeError(f"entry point {ep.name!r} = {ep.value!r} of {GROUP!r} is a "
                            f"{type(definition).__name__}, not a tritonize.tasks.TaskDefinition")
        if definition.name != ep.name:
            raise ValueError(f"entry point {ep.name!r} of {GROUP!r} defines task {definition.name!r}: "
                             "the two names must be the same")
        found.append((ep.name, definition))
    return tuple(sorted(found))


def definitions() -> Dict[str, TaskDefinition]:
    """Every installed task, by name."""
    return dict(_registered())


def names() -> List[str]:
    return [name for name, _ in _registered()]


def aliases() -> Dict[str, str]:
    """Every name a user may give a task (its name, its aliases), lower-case -> task name."""
    found: Dict[str, str] = {}
    for name, definition in _registered():
        found[name.lower()] = name
        for alias in definition.aliases:
            found.setdefault(alias.lower(), name)
    return found


def get(name: str) -> TaskDefinition:
    """The task called ``name`` (or one of its aliases); ``UnknownTask`` names the installed ones."""
    known = definitions()
    task = aliases().get(str(name).lower())
    if task is None:
        available = ", ".join(known) or "none (is tritonize installed? pip install -e .)"
        raise UnknownTask(f"no task plugin {name!r} is installed; available: {available}")
    return known[task]


def refresh() -> None:
    """Read the entry points again (after a plugin was installed into this process's environment)."""
    _registered.cache_clear()


# -- the built-in tasks ----------------------------------------------------------------
TEXT_CLASSIFICATION = TaskDefinition(
    name="text-classification",
    inputs=("TEXT", "TEXT_PAIR"),
    optional=("TEXT_PAIR",),
    exporter="tritonize.exporters.tasks.text_classification:TextClassificationTask",
    codec="tritonize.client.tasks:TextClassificationCodec",
    aliases=("classification", "sentiment"),
    summary="labels and scores of a text or a sentence pair, as pipeline('text-classification')",
    parameters={"top_k": "how many labels (default: all)"},
)
TOKEN_CLASSIFICATION = TaskDefinition(
    name="token-classification",
    inputs=("TEXT",),
    exporter="tritonize.exporters.tasks.token_classification:TokenClassificationTask",
    codec="tritonize.client.tasks:TokenClassificationCodec",
    aliases=("ner",),
    summary="entities of a text, as pipeline('token-classification')",
    parameters={"aggregation_strategy": "none | simple | first | average | max (default: the export's)"},
)
QUESTION_ANSWERING = TaskDefinition(
    name="question-answering",
    inputs=("QUESTION", "CONTEXT"),
    exporter="tritonize.exporters.tasks.question_answering:QuestionAnsweringTask",
    codec="tritonize.client.tasks:QuestionAnsweringCodec",
    aliases=("qa",),
    summary="answer spans of a question in a context, as pipeline('question-answering')",
    parameters={"top_k": "how many answers (default 1)", "max_answer_len": "tokens per answer",
                "handle_impossible_answer": "true: the empty answer may win"},
)
FILL_MASK = TaskDefinition(
    name="fill-mask",
    inputs=("TEXT",),
    exporter="tritonize.exporters.tasks.fill_mask:FillMaskTask",
    codec="tritonize.client.tasks:FillMaskCodec",
    aliases=("mask", "mlm"),
    summary="the best fillers of each mask token of a text, as pipeline('fill-mask')",
    parameters={"top_k": "fillers per mask (default 5)",
                "targets": "JSON list of words or tokens: score only these"},
    # "{mask}" stands for the model's own mask token ([MASK], <mask> ...), which the codec puts in
    samples=(
        {"text": "Paris is the {mask} of France.", "length": "short"},
        {"text": "I {mask} this phone, the battery lasts two days.", "length": "short"},
        {"text": "The service was slow and the food arrived {mask}, so we asked the waiter to take it back "
                 "and bring us something else.", "length": "medium"},
        {"text": "Thanks for the quick reply, that {mask} my problem. I had been waiting on hold for forty "
                 "minutes with another company before I found your support page.", "length": "medium"},
        {"text": "The museum in Florence was breathtaking. We spent the whole morning walking through the "
                 "galleries, and by the afternoon our feet were sore but nobody wanted to leave. The guide "
                 "told us about the families who paid for the paintings, the artists who worked on them for "
                 "years, and the floods that nearly destroyed them. The {mask} was worth every minute of the "
                 "long queue outside, and we would go back tomorrow if we could.", "length": "long"},
    ),
)
FEATURE_EXTRACTION = TaskDefinition(
    name="feature-extraction",
    inputs=("TEXT",),
    exporter="tritonize.exporters.tasks.feature_extraction:FeatureExtractionTask",
    codec="tritonize.client.tasks:FeatureExtractionCodec",
    aliases=("embeddings", "embed", "sentence-embeddings"),
    summary="one sentence embedding per text (cls or mean pooling, optionally L2-normalized), as "
            "sentence-transformers' encode or pipeline('feature-extraction') pooled",
    parameters={"normalize": "true | false: L2-normalize the embeddings (default: the export's)"},
)
