"""What the load test sends: built-in realistic inputs, or rows of a JSONL/CSV file.

Built-in samples come in three lengths, so that the dynamic batcher and the
tokenizer see what production sees: short texts (a few words, a tweet), medium
ones (a paragraph) and long ones (several paragraphs; longer than the usual
512-token window for NER and QA contexts, so that windowing is exercised).

Which inputs a task takes comes from its plugin (:mod:`tritonize.tasks`):
a task plugin's own built-in samples are used when it brings them; else a task
whose one required input is ``TEXT`` gets the built-in texts.

A data file (``--data``) is JSONL or CSV, one column per input, named as the
task names them (lower-case):

* ``{"text": "..."}`` rows feed every task whose one required input is the text
  (text-classification, token-classification ...); a ``text_pair`` column is
  sent with it to the tasks that take one;
* ``{"question": "...", "context": "..."}`` rows feed question-answering;
* an optional ``task`` column restricts a row to one task (its name or an
  alias: ``classification``, ``ner``, ``qa`` ...).

CSV files need a header row with the same column names.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from tritonize import tasks


class DataError(ValueError):
    """The data file cannot be read or holds no usable row."""


@dataclass(frozen=True)
class Sample:
    """One input of a task: its texts by input keyword (``text``; ``question`` and ``context`` ...)."""

    fields: Dict[str, str] = field(default_factory=dict)
    length: str = "file"  # short | medium | long for built-in samples

    @property
    def text(self) -> Optional[str]:
        return self.fields.get("text")

    def to_dict(self) -> Dict[str, Optional[str]]:
        return {**self.fields, "length": self.length}

    @classmethod
    def from_dict(cls, data: Dict[str, Optional[str]]) -> "Sample":
        fields = {k: str(v) for k, v in data.items() if k != "length" and v is not None}
        return cls(fields, data.get("length") or "file")


Samples = Dict[str, List[Sample]]  # task -> samples


# -- built-in samples ---------------------------------------------------------------
_SHORT_TEXTS = [
    "Love it.",
    "Worst update ever, the app crashes on start.",
    "The car company announced a new model today.",
    "Honestly the ride was smooth and the app made it so easy.",
    "Another recall? This is getting ridiculous.",
    "Call Agnieszka Kowalczyk at 555-0134.",
    "Ship it to 2741 Maple Grove Road, Columbus, OH 43215.",
    "José Müller's account 000123456789 was charged twice.",
    "Meeting moved to Thursday, nothing else changed.",
    "Thanks @support, fixed in five minutes!",
]

_MEDIUM_TEXTS = [
    "I have been driving the new hatchback for three weeks now and I am honestly surprised. The lane "
    "assist works on the highway, the seats are comfortable on long trips, and the infotainment system "
    "finally connects to my phone without a fight. Fuel use is a bit higher than advertised, though.",
    "Hi, my name is Daniel Okafor and I moved last month. Please update the billing address on my "
    "account to 88 Harbour Street, Apartment 4B, Portland, ME 04101, and send the invoices to "
    "d.okafor@example.org instead of my old work email. My phone number stays 207-555-0199.",
    "The customer called three times about the same broken charger. Each agent promised a replacement "
    "within five days and nothing arrived. She is now asking for a full refund and says she will cancel "
    "the subscription if nobody from the escalation team contacts her before Friday.",
    "Traffic on the bridge is moving at normal speed this morning after yesterday's closure. Officials "
    "said the inspection found no structural damage, but the left lane will stay closed overnight "
    "until the repaving work is finished later this week.",
    "Dear Ms. Lindqvist, thank you for your application for the position of senior data engineer in our "
    "Stockholm office. We would like to invite you to an interview on 14 March at 10:30. Please bring a "
    "valid ID; your reference number is SE-2024-7781.",
]

_LONG_PARAGRAPHS = [
    "On the morning of the incident, the driver, Maria Fernanda Alvarez, left her home at 1190 West "
    "Cedar Avenue in Tucson, Arizona, shortly before seven. According to her statement, the vehicle's "
    "driver-assistance system was engaged on the interstate and behaved normally for about twenty "
    "minutes. Near exit 257 the car braked sharply without any obstacle ahead, and the pickup truck "
    "behind her, driven by Thomas Reilly, could not stop in time.",
    "Both drivers exchanged insurance details at the scene. Mr. Reilly's policy number is "
    "HX-4471-920-B with Northgate Mutual, and his contact number is 520-555-0147. Ms. Alvarez reported "
    "the event to the manufacturer the same day through the in-car app and by email to "
    "safety-reports@example.com, attaching the dashcam footage and the diagnostic log export.",
    "The manufacturer's field engineer, Priya Raghunathan, inspected the car on 3 April at the dealer "
    "in Phoenix. She found a firmware version that had been superseded two weeks earlier, a radar "
    "sensor with a slightly misaligned bracket, and no stored fault codes. The dealer replaced the "
    "bracket, updated the firmware and recalibrated the sensor, which took about four hours.",
    "Ms. Alvarez has asked for a rental car for the days the vehicle was in the workshop, for "
    "reimbursement of the tow, which cost 245 dollars, and for a written explanation of what caused "
    "the phantom braking. She also asked whether other owners have reported the same behaviour and "
    "whether a recall is being considered by the national highway safety regulator.",
    "The customer relations team replied that the rental and the tow will be refunded within fourteen "
    "business days to the card ending in 4421, that the engineering team is analysing the log, and "
    "that a written summary will follow once the analysis is complete. The case number for all "
    "further correspondence is CR-88213, and the assigned agent is Kwame Mensah in the Atlanta office.",
]


def _long_text(start: int, paragraphs: int) -> str:
    chosen = [_LONG_PARAGRAPHS[(start + i) % len(_LONG_PARAGRAPHS)] for i in range(paragraphs)]
    return "\n\n".join(chosen)


_LONG_TEXTS = [_long_text(0, 3), _long_text(2, 5), _long_text(1, 8)]

_QA_SHORT = [
    ("How much was refunded?", "The refund of EUR 89.00 was approved on Monday."),
    ("Who approved the refund?", "Nadia Petrova approved the refund after checking the receipt."),
    ("When does the store open?", "The store opens at 9 am on weekdays and at 10 am on Saturdays."),
    ("Where is the head office?", "The company's head office is in Rotterdam, close to the central station."),
]

_QA_MEDIUM = [
    ("What did the engineer replace?",
     "The field engineer inspected the car at the dealer in Phoenix. She found an outdated firmware, a "
     "slightly misaligned radar bracket and no stored fault codes. The dealer replaced the bracket, updated "
     "the firmware and recalibrated the sensor, which took about four hours."),
    ("How long is the warranty on the battery?",
     "Every new vehicle comes with a four-year basic warranty. The high-voltage battery and the drive unit "
     "are covered for eight years or 160,000 kilometres, whichever comes first, and the battery is "
     "guaranteed to keep at least seventy percent of its capacity during that period."),
    ("Which lane stays closed?",
     "Traffic on the bridge is moving at normal speed after yesterday's closure. The inspection found no "
     "structural damage, but the left lane will stay closed overnight until the repaving is finished."),
]

_QA_LONG = [
    ("What is the case number?", _long_text(0, 5)),
    ("How much did the tow cost?", _long_text(1, 8)),
    ("Who inspected the car?", _long_text(3, 9)),
]


def builtin_samples() -> Samples:
    """Realistic inputs of varied length for every installed task that has some."""
    texts = ([Sample({"text": t}, "short") for t in _SHORT_TEXTS]
             + [Sample({"text": t}, "medium") for t in _MEDIUM_TEXTS]
             + [Sample({"text": t}, "long") for t in _LONG_TEXTS])
    pairs = ([Sample({"question": q, "context": c}, "short") for q, c in _QA_SHORT]
             + [Sample({"question": q, "context": c}, "medium") for q, c in _QA_MEDIUM]
             + [Sample({"question": q, "context": c}, "long") for q, c in _QA_LONG])
    found: Samples = {}
    for name, definition in tasks.definitions().items():
        if definition.samples:
            found[name] = [Sample.from_dict(dict(sample)) for sample in definition.samples]
        elif definition.required_keywords == ("text",):
            found[name] = list(texts)
        elif definition.required_keywords == ("question", "context"):
            found[name] = list(pairs)
    return found


# -- data files ---------------------------------------------------------------------
def _add(samples: Samples, row: Dict[str, object], where: str) -> None:
    known = tasks.definitions()
    task_value = row.get("task")
    if task_value not in (None, ""):
        try:
            chosen = [tasks.get(str(task_value).strip()).name]
        except tasks.UnknownTask:
            raise DataError(f"{where}: unknown task {task_value!r}; use one of "
                            f"{', '.join(sorted(tasks.aliases()))}") from None
    else:
        chosen = list(known)
    inputs = {key: value for key, value in row.items() if key != "task"}
    for name in {k for d in known.values() for k in d.keywords} & set(inputs):
        if not isinstance(inputs[name], str):
            raise DataError(f"{where}: {name} must be a string, got {type(inputs[name]).__name__}")
    fed = False
    for name in chosen:
        definition = known[name]
        if not all(inputs.get(k) for k in definition.required_keywords):
            continue
        fields = {k: str(inputs[k]) for k in definition.keywords if inputs.get(k)}
        samples.setdefault(name, []).append(Sample(fields))
        fed = True
    if fed:
        return
    partial = [known[n] for n in chosen if any(inputs.get(k) for k in known[n].required_keywords)]
    if partial:
        definition = partial[0]
        raise DataError(f"{where}: a {definition.name} row needs "
                        f"{' and '.join(repr(k) for k in definition.required_keywords)}; got keys {sorted(row)}")
    needs = "; ".join(f"{' and '.join(repr(k) for k in known[n].required_keywords)} ({n})" for n in chosen)
    raise DataError(f"{where}: a row needs the inputs of a task: {needs}; got keys {sorted(row)}")


def load_samples(path: Union[str, Path]) -> Samples:
    """Read a JSONL (``.jsonl``/``.json``/``.ndjson``) or CSV (``.csv``/``.tsv``) data file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    samples: Samples = {}
    keywords = {k for d in tasks.definitions().values() for k in d.keywords}
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
                columns = set(reader.fieldnames or [])
                if not columns & keywords:
                    raise DataError(f"{path}: the header must name a 'text' column, or 'question' and 'context' "
                                    f"columns; got {sorted(columns)}")
                for number, row in enumerate(reader, start=2):
                    _add(samples, {k: v for k, v in row.items() if k is not None and v != ""}, f"{path}:{number}")
        elif suffix in (".jsonl", ".json", ".ndjson"):
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{number}: not a JSON object ({exc.msg})") from exc
                    if not isinstance(row, dict):
                        raise DataError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
                    _add(samples, row, f"{path}:{number}")
        else:
            raise DataError(f"data file {path}: use .jsonl (one JSON object a line) or .csv with a header row")
    except UnicodeDecodeError as exc:
        raise DataError(f"data file {path} is not UTF-8 text: {exc}") from exc
    if not any(samples.values()):
        raise DataError(f"data file {path} holds no row")
    return samples
