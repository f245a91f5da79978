"""Tiny random Hugging Face checkpoints, built offline in seconds, for tests.

The Hugging Face Hub cannot be reached from the test machines, so tests build
their own checkpoints: a ``transformers`` config shrunk to hidden size 32 and
two layers (under 100k parameters), random weights from a fixed seed, and a tokenizer trained with the
``tokenizers`` library on a small built-in English corpus. Each architecture
gets the tokenizer family it has in the wild, because offset mapping differs
across them and that is where NER and QA bugs live:

===========  ===============================  ===========================  =========================
arch         tokenizer model                  template (single / pair)     offsets of "▁world"/"Ġworld"
===========  ===============================  ===========================  =========================
bert         WordPiece, lowercase, no accent  [CLS] A [SEP] / + B [SEP]    "world" (no prefix piece)
distilbert   same as bert                     same as bert                 same as bert
electra      same as bert                     same as bert                 same as bert
roberta      byte-level BPE, no prefix space  <s> A </s> / + </s> B </s>   "world" (trimmed)
xlm-roberta  Unigram, whitespace split + ▁    <s> A </s> / + </s> B </s>   "world"; a lone "▁"
                                                                           overlaps the next char
albert       as xlm-roberta, lowercase,       [CLS] A [SEP] / + B [SEP]    as xlm-roberta
             accents stripped
deberta-v2   Unigram, ▁ replaces spaces       [CLS] A [SEP] / + B [SEP]    " world" (space included,
             (as transformers converts                                     as deberta-v3 converted
             deberta-v3's spm.model)                                       by transformers)
deberta      byte-level BPE (GPT-2's, as      [CLS] A [SEP] / + B [SEP]    " world" (not trimmed:
             deberta-base), no prefix space                                TemplateProcessing)
modernbert   byte-level BPE (OLMo-style, as   [CLS] A [SEP] / + B [SEP]    " world" (not trimmed)
             ModernBERT-base), no prefix
             space, no token_type_ids
===========  ===============================  ===========================  =========================

Every tokenizer has a mask token; it eats the space before it (``lstrip``)
where the released one does: roberta, xlm-roberta, albert, deberta and
modernbert. ModernBERT's tokenizer is the generic ``PreTrainedTokenizerFast``
with ``model_input_names`` ``["input_ids", "attention_mask"]`` and 8,192
tokens, and its model has rotary positions up to 8,192, a global-attention
layer then a sliding-window one (a window of ``MODERNBERT_LOCAL_ATTENTION``
tokens), and mean pooling.

Tasks (``TASKS``) are the pipeline names, each with its model class:
text-classification, token-classification and question-answering heads,
``fill-mask`` (``*ForMaskedLM``, its decoder tied to the word embeddings as
released) and ``feature-extraction`` (the bare encoder: ``AutoModel``, e.g.
``BertModel``), for every architecture.

The directory written by :func:`make_tiny_checkpoint` is self-contained:
``AutoTokenizer.from_pretrained(dir)``, ``AutoModelFor<Task>.from_pretrained(dir)``
and ``transformers.pipeline(task, model=dir)`` work from it alone.
:func:`tiny_checkpoint` builds one into a shared cache (``CACHE_ROOT``,
``.cache/test-checkpoints``), in a directory named after its arguments.

Random tiny models give near-uniform outputs that barely depend on the input,
which would leave label order to be decided by 1e-6 differences. So the
encoder is initialised with ``initializer_range=0.2`` (attention is not
uniform, the output depends on the text), and the task head is calibrated on a
few sentences: its mean output is subtracted and its last layer scaled so that
the logits of one input are about ``LOGIT_SPREAD`` apart (see
``_calibrate_head``). A masked-LM head is calibrated the same way at masked
positions, through its last LayerNorm and vocabulary bias (its decoder is the
tied word embeddings), to ``MASK_LOGIT_SPREAD``: its top-5 predictions are
apart and change with the context (see ``_calibrate_mlm_head``). Everything is
seeded, so a given set of arguments always gives the same weights.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ARCHITECTURES = (
    "bert", "distilbert", "roberta", "deberta-v2", "electra", "xlm-roberta", "albert", "deberta", "modernbert",
)  # fmt: skip
# The pipeline tasks, each with the transformers Auto class of its model:
# text-classification *ForSequenceClassification, token-classification
# *ForTokenClassification, question-answering *ForQuestionAnswering, fill-mask
# *ForMaskedLM, feature-extraction the bare encoder (AutoModel, e.g. BertModel).
TASKS = ("text-classification", "token-classification", "question-answering", "fill-mask", "feature-extraction")
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification", "regression")

STAMP_NAME = "tiny_checkpoint.json"
# Where tiny_checkpoint() keeps checkpoints between runs (git-ignored, as the fixtures' cache).
CACHE_ROOT = Path(__file__).resolve().parent.parent / ".cache" / "test-checkpoints"
# Bump when the output of make_tiny_checkpoint changes for the same arguments,
# so that cached directories are rebuilt.
FORMAT_VERSION = 1

VOCAB_SIZE = 800
MAX_LENGTH = 512
HIDDEN_SIZE = 32
NUM_LAYERS = 2
NUM_HEADS = 4
INTERMEDIATE_SIZE = 37
# Large enough that attention is not uniform and the output depends on the text.
INITIALIZER_RANGE = 0.2
# Typical standard deviation of the logits of one input after the head is
# rescaled: a few units apart, so label order never hangs on rounding, and not
# so far apart that softmax saturates to 1e-9 scores.
LOGIT_SPREAD = 1.5
# The same for a masked-LM head, over its whole vocabulary at a [MASK]: wide
# enough that the top-5 predictions are far apart (about 1 unit between
# neighbours), so their order never hangs on float noise.
MASK_LOGIT_SPREAD = 3.0
# ModernBERT: as the released checkpoints, rotary positions up to 8,192 tokens;
# a global-attention layer then a sliding-window one (every second layer is
# global), with a window of 16 tokens (8 either side), so that any text longer
# than that exercises the local attention.
MODERNBERT_MAX_LENGTH = 8192
MODERNBERT_LOCAL_ATTENTION = 16

_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class CheckpointSpec:
    """What a tiny checkpoint was built from; stored as its stamp."""

    arch: str
    task: str
    problem_type: str | None
    num_labels: int
    seed: int
    format_version: int = FORMAT_VERSION


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #


def make_tiny_checkpoint(
    arch: str,
    out_dir: str | Path,
    task: str = "text-classification",
    *,
    problem_type: str | None = None,
    num_labels: int | None = None,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a tiny random checkpoint for ``arch`` and ``task`` in ``out_dir``.

    ``task`` is one of ``TASKS``: text-classification, token-classification,
    question-answering, fill-mask (a masked-LM head) or feature-extraction (the
    bare encoder).

    ``num_labels`` defaults by task: 3 for text classification, 7 for token
    classification (``O`` plus B-/I- for PER, ORG, LOC), 1 for regression; it
    is not used for question answering, fill-mask and feature-extraction
    (stamped as 0 for the last two). For token classification it must be
    odd (``O`` plus a B-/I- pair per entity type). With
    ``problem_type="regression"`` the model always has one output.

    If ``out_dir`` already holds a checkpoint built with the same arguments it
    is returned as is. A directory holding a checkpoint built with other
    arguments is rebuilt; a non-empty directory without a stamp is refused.
    """
    spec = _resolve_spec(arch, task, problem_type, num_labels, seed)
    out_dir = Path(out_dir)
    stamp = _read_stamp(out_dir)
    if stamp is not None and stamp == asdict(spec) and _is_complete(out_dir):
        return out_dir
    if stamp is None and out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} is not empty and has no {STAMP_NAME}, so it was not built by "
            "make_tiny_checkpoint; refusing to overwrite it. Pass an empty or new directory."
        )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        _build(spec, staging)
        (staging / STAMP_NAME).write_text(json.dumps(asdict(spec), indent=2) + "\n")
        _move_into_place(staging, out_dir, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def tiny_checkpoint(
    arch: str,
    task: str = "text-classification",
    *,
    problem_type: str | None = None,
    num_labels: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> Path:
    """:func:`make_tiny_checkpoint` into a shared cache: ``root`` (default ``CACHE_ROOT``) / a name of its arguments.

    The name is ``<task>-<arch>`` for the default arguments (e.g.
    ``fill-mask-modernbert``, ``feature-extraction-bert``), followed by
    ``-problem_type=...``, ``-num_labels=...`` and ``-seed=...`` when given, so
    different arguments never share a directory and a second call (in this
    process or a later one) reuses the checkpoint.
    """
    options = (("problem_type", problem_type), ("num_labels", num_labels), ("seed", seed or None))
    name = "-".join([task, arch, *(f"{key}={value}" for key, value in options if value is not None)])
    return make_tiny_checkpoint(
        arch, Path(root or CACHE_ROOT) / name, task, problem_type=problem_type, num_labels=num_labels, seed=seed
    )


# --------------------------------------------------------------------------- #
# Arguments, stamp and cache
# --------------------------------------------------------------------------- #


def _resolve_spec(arch: str, task: str, problem_type: str | None, num_labels: int | None, seed: int) -> CheckpointSpec:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"unknown problem_type {problem_type!r}; choose one of {PROBLEM_TYPES}")
    if task != "text-classification" and problem_type not in (None, "single_label_classification"):
        raise ValueError(
            f"problem_type {problem_type!r} only applies to text-classification, not {task!r}; "
            "leave it as None for this task"
        )
    if task == "question-answering":
        num_labels = 2  # start and end logits
    elif task in ("fill-mask", "feature-extraction"):
        num_labels = 0  # no labels: a masked-LM head over the vocabulary, or no head at all
    elif problem_type == "regression":
        num_labels = 1
    elif task == "token-classification":
        num_labels = 7 if num_labels is None else num_labels
        if num_labels < 3 or num_labels % 2 == 0:
            raise ValueError(
                f"token-classification needs an odd num_labels >= 3 (O plus a B-/I- pair per "
                f"entity type), got {num_labels}"
            )
    else:
        num_labels = 3 if num_labels is None else num_labels
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
    return CheckpointSpec(arch=arch, task=task, problem_type=problem_type, num_labels=num_labels, seed=seed)


def _read_stamp(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(out_dir: Path) -> bool:
    return all((out_dir / name).is_file() for name in _REQUIRED_FILES)


def _move_into_place(staging: Path, out_dir: Path, spec: CheckpointSpec) -> None:
    if out_dir.exists():
        if _read_stamp(out_dir) == asdict(spec) and _is_complete(out_dir):
            return  # someone else built the same checkpoint meanwhile
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        else:
            shutil.rmtree(out_dir)  # our own stale checkpoint (checked by the caller)
    try:
        os.replace(staging, out_dir)
    except OSError:
        # Lost a race with a concurrent builder: fine if it built the same thing.
        if not (_read_stamp(out_dir) == asdict(spec) and _is_complete(out_dir)):
            raise


# --------------------------------------------------------------------------- #
# Labels
# --------------------------------------------------------------------------- #

_SENTIMENT_LABELS = {
    1: ["positive"],
    2: ["negative", "positive"],
    3: ["negative", "neutral", "positive"],
    4: ["very negative", "negative", "positive", "very positive"],
    5: ["very negative", "negative", "neutral", "positive", "very positive"],
}
_TOPIC_LABELS = [
    "sports", "politics", "science", "business", "health", "travel", "music", "food",
    "technology", "weather", "education", "art", "finance", "gaming", "fashion", "law",
]  # fmt: skip
_EMOTION_LABELS = ["joy", "anger", "sadness", "fear", "surprise", "disgust", "trust", "anticipation"]
_ENTITY_TYPES = ["PER", "ORG", "LOC", "MISC", "DATE", "TIME", "MONEY", "PERCENT", "PRODUCT", "EVENT"]


def _label_names(spec: CheckpointSpec) -> list[str]:
    n = spec.num_labels
    if spec.task == "question-answering":
        return ["LABEL_0", "LABEL_1"]
    if spec.task == "token-classification":
        types = [_ENTITY_TYPES[i] if i < len(_ENTITY_TYPES) else f"ENT{i}" for i in range((n - 1) // 2)]
        return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]
    if spec.problem_type == "regression":
        return ["score"]
    if spec.problem_type == "multi_label_classification":
        pool = _EMOTION_LABELS
    elif n in _SENTIMENT_LABELS:
        return list(_SENTIMENT_LABELS[n])
    else:
        pool = _TOPIC_LABELS
    return [pool[i] if i < len(pool) else f"{pool[i % len(pool)]}_{i // len(pool)}" for i in range(n)]


# --------------------------------------------------------------------------- #
# Corpus
# --------------------------------------------------------------------------- #

_SUBJECTS = [
    "The movie", "This phone", "My neighbour", "The new café", "Our team", "The weather in Paris",
    "Her novel", "The museum in München", "That restaurant", "The concert", "His résumé",
    "The hotel near the station", "The customer service", "This laptop", "The football match",
    "The president", "A small startup", "The bank", "Your package", "The train to Zürich",
]  # fmt: skip
_VERBS = [
    "was", "is", "seemed", "felt", "looked", "turned out to be", "has been", "will be",
    "became", "remains",
]  # fmt: skip
_COMPLEMENTS = [
    "absolutely wonderful", "terrible and slow", "quite good", "not bad at all", "surprisingly boring",
    "amazing!", "awful...", "fine, I guess", "the best in town", "a complete disaster",
    "expensive but worth it", "cheap and cheerful", "really, really loud", "calm and quiet",
    "late again", "on time for once", "better than expected", "worse than last year",
]  # fmt: skip
_TAILS = [
    "", " yesterday", " today", " last night", " in 2023", " on 12/05/2024", " at 9:30 am",
    " for $49.99", " (again)", " — honestly", " :)", " 👍", " 😀", " according to Dr. Smith",
]  # fmt: skip
_FIXED_SENTENCES = [
    "Hello world!",
    "Hello, world. How are you?",
    "I love this! 😀😀",
    "I hate waiting in line… 😡",
    "Barack Obama was born in Hawaii.",
    "Angela Merkel met Emmanuel Macron in Berlin on Monday.",
    "Apple Inc. opened a new store in New York City.",
    "Google, Microsoft and Amazon reported earnings of $1.2 billion.",
    "Marie Curie won the Nobel Prize in 1903 and 1911.",
    "The Eiffel Tower is 330 metres tall.",
    "José García lives in São Paulo, Brasil.",
    "François and Zoë had crème brûlée at the café.",
    "Ñandú, señor, mañana, pingüino.",
    "Björn Borg won Wimbledon five times.",
    "Łódź and Kraków are cities in Poland.",
    "Tokyo is 東京 in Japanese, and Beijing is 北京.",
    "日本語のテキストも少し含まれています。",
    "中文文本：我喜欢学习。",
    "한국어 문장도 있습니다.",
    "Москва — столица России.",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "العربية لغة جميلة.",
    "The price is €12.50, or £10, or ¥1500.",
    "Call me at +1 (555) 123-4567 or email john.doe@example.com.",
    "Visit https://example.org/path?query=1&x=2 for details.",
    "Temperatures reached 35°C (95°F) on 2024-07-14.",
    "She said: \"It's 100% true!\" — didn't she?",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 3.14 2,500",
    "Punctuation: ! ? . , ; : - _ ( ) [ ] { } < > / \\ | @ # $ % ^ & * + = ~ ` ' \"",
    "Emoji test: 🙂 🎉 🚀 ❤️ 🔥 😂 🤔 👋",
    "What is the capital of France? The capital of France is Paris.",
    "Who wrote Hamlet? William Shakespeare wrote Hamlet around 1600.",
    "When did the war end? The war ended in 1945.",
    "How many people live in Tokyo? About 14 million people live in Tokyo.",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "Don't, can't, won't, shouldn't, it's, we're, they'll.",
    "Naïve coöperation at the façade of the hôtel.",
    "Double  spaces   and\ttabs\tare whitespace too.",
    "unbelievable, unhappiness, internationalization, tokenization, preprocessing",
]  # fmt: skip


def training_corpus() -> list[str]:
    """The built-in corpus the tokenizers are trained on (deterministic, ~500 lines)."""
    lines = list(_FIXED_SENTENCES)
    # Deterministic walk through the template grid: coprime strides give varied combinations.
    for i in range(420):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        verb = _VERBS[(i * 3) % len(_VERBS)]
        complement = _COMPLEMENTS[(i * 7) % len(_COMPLEMENTS)]
        tail = _TAILS[(i * 11) % len(_TAILS)]
        line = f"{subject} {verb} {complement}{tail}"
        if i % 5 == 0:
            line = line.lower()
        elif i % 13 == 0:
            line = line.upper()
        lines.append(line)
    # Every printable ASCII character on its own, so each is in every vocabulary.
    lines.append(" ".join(chr(c) for c in range(33, 127)))
    return lines


# --------------------------------------------------------------------------- #
# Tokenizers
# --------------------------------------------------------------------------- #
#
# The tokenizers library's WordPiece and Unigram trainers are not deterministic:
# WordPiece gives "##x" pieces ids in hash-map order, which then breaks ties
# between merges differently on every run, and Unigram's EM sums floats in
# hash-map order (scores move by up to 5e-4). Plain BPE training is
# deterministic (sorted alphabet, ties broken by ids). So both are derived
# from a plain BPE run over words marked with a leading "▁":
#
# * WordPiece: a "▁"-initial BPE piece is a word-initial piece, any other is a
#   "##" continuation; every character is both.
# * Unigram: the BPE pieces are the SentencePiece-style vocabulary, scored as
#   Unigram log-probabilities by a few rounds of Viterbi re-estimation in
#   Python (hard EM).

_WORD_MARK = "▁"


def _corpus_words(normalizer, pre_tokenizer) -> list[str]:
    """The corpus cut into words the way the tokenizer will see them, one entry per occurrence."""
    words = []
    for line in training_corpus():
        normalized = normalizer.normalize_str(line) if normalizer is not None else line
        words += [word for word, _ in pre_tokenizer.pre_tokenize_str(normalized)]
    return words


def _bpe_pieces(words: list[str], vocab_size: int) -> list[str]:
    """Pieces of a plain BPE trained on ``words`` (each taken whole), in id order."""
    from tokenizers import Tokenizer, models, trainers

    bpe = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False)
    bpe.train_from_iterator(words, trainer=trainer)
    vocab = bpe.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def _wordpiece_vocab(words: list[str], specials: list[str]) -> dict[str, int]:
    chars = sorted({c for word in words for c in word})
    pieces = list(specials) + chars + [f"##{c}" for c in chars]
    for piece in _bpe_pieces([_WORD_MARK + word for word in words], vocab_size=VOCAB_SIZE):
        if piece != _WORD_MARK:
            pieces.append(piece[1:] if piece.startswith(_WORD_MARK) else f"##{piece}")
    # BPE pieces come in merge order, so cutting the tail drops the rarest merges.
    return {piece: i for i, piece in enumerate(list(dict.fromkeys(pieces))[:VOCAB_SIZE])}


def _viterbi(word: str, scores: dict[str, float], max_len: int) -> list[str]:
    best = [0.0] + [float("-inf")] * len(word)
    back = [0] * (len(word) + 1)
    for end in range(1, len(word) + 1):
        for begin in range(max(0, end - max_len), end):
            score = scores.get(word[begin:end])
            if score is not None and best[begin] + score > best[end]:
                best[end], back[end] = best[begin] + score, begin
    pieces, end = [], len(word)
    while end > 0:
        pieces.append(word[back[end] : end])
        end = back[end]
    return pieces[::-1]


def _unigram_scores(words: list[str], pieces: list[str], rounds: int = 3) -> dict[str, float]:
    """Unigram log-probabilities of ``pieces`` on ``words`` by Viterbi re-estimation."""
    import math
    from collections import Counter

    word_counts = sorted(Counter(words).items())
    max_len = max(len(piece) for piece in pieces)
    known = set(pieces)
    # Start from how often each piece occurs as a substring.
    counts = Counter()
    for word, n in word_counts:
        for begin in range(len(word)):
            for end in range(begin + 1, min(len(word), begin + max_len) + 1):
                if word[begin:end] in known:
                    counts[word[begin:end]] += n
    for _ in range(rounds):
        total = sum(counts.values()) + 0.1 * len(pieces)
        scores = {piece: math.log((counts[piece] + 0.1) / total) for piece in pieces}
        counts = Counter()
        for word, n in word_counts:
            for piece in _viterbi(word, scores, max_len):
                counts[piece] += n
    total = sum(counts.values()) + 0.1 * len(pieces)
    return {piece: round(math.log((counts[piece] + 0.1) / total), 6) for piece in pieces}


def _train_wordpiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = _wordpiece_vocab(_corpus_words(normalizer, pre_tokenizer), specials)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


def _byte_level_bpe(head: list[str], tail: tuple[str, ...] | list[str] = ()):
    """A GPT-2 style byte-level BPE trained on the corpus: ``head`` tokens first, ``tail`` after the merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    # No prefix space: the first word of a text has no "Ġ"; every later word does.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(head),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    # Tokens after the merges, as in the released vocabularies (DeBERTa's [MASK] is
    # id 50264, ModernBERT's [UNK]..[MASK] are 50280..50284). Their [MASK] eats the
    # space before it (lstrip), as the released tokenizers' does.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == "[MASK]") for t in tail])
    return tok


def _train_byte_level_bpe():
    from tokenizers import processors

    tok = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    # roberta-base: no prefix space, offsets trimmed of the leading "Ġ" space.
    tok.post_processor = processors.RobertaProcessing(
        sep=("</s>", tok.token_to_id("</s>")),
        cls=("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tok


def _bert_template(tok, cls: str = "[CLS]", sep: str = "[SEP]"):
    from tokenizers import processors

    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )


def _train_deberta_bpe():
    """microsoft/deberta-base: GPT-2's byte-level BPE with BERT's special tokens, as transformers converts it.

    The converter (``DebertaConverter``) puts a ``TemplateProcessing`` after the
    byte-level pre-tokenizer, so offsets are not trimmed: "Ġworld" spans " world".
    The BPE model has ``continuing_subword_prefix=""`` (not word-aware for the
    NER pipeline).
    """
    from tokenizers import Tokenizer

    tok = _byte_level_bpe(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], ["[MASK]"])
    state = json.loads(tok.to_str())
    state["model"].update(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    tok = Tokenizer.from_str(json.dumps(state))
    tok.post_processor = _bert_template(tok)
    return tok


def _train_modernbert_bpe():
    """answerdotai/ModernBERT-base: an OLMo-style byte-level BPE, BERT's special tokens at the end.

    ``TemplateProcessing`` after a byte-level pre-tokenizer, as in its
    tokenizer.json: offsets are not trimmed ("Ġworld" spans " world").
    """
    tok = _byte_level_bpe(["<|padding|>", "<|endoftext|>"], ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    tok.post_processor = _bert_template(tok)
    return tok


# Special tokens of the Unigram architectures, in vocabulary order, as in the
# released checkpoints; the mask token comes last for xlm-roberta and deberta-v3.
_UNIGRAM_SPECIALS = {
    "xlm-roberta": {"head": ["<s>", "<pad>", "</s>", "<unk>"], "tail": ["<mask>"], "unk": "<unk>",
                    "cls": "<s>", "sep": "</s>"},
    "deberta-v2": {"head": ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "tail": ["[MASK]"], "unk": "[UNK]",
                   "cls": "[CLS]", "sep": "[SEP]"},
    "albert": {"head": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "tail": [], "unk": "<unk>",
               "cls": "[CLS]", "sep": "[SEP]"},
}  # fmt: skip


def _unigram_text_pipeline(arch: str):
    """Normalizer and pre-tokenizer of a SentencePiece-style tokenizer for ``arch``."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    if arch == "xlm-roberta":
        norm = [normalizers.NFKC()]
    elif arch == "deberta-v2":
        norm = [normalizers.Strip(), normalizers.NFKC()]
    else:  # albert: do_lower_case=True, keep_accents=False
        norm = [
            normalizers.Replace("``", '"'),
            normalizers.Replace("''", '"'),
            normalizers.NFKD(),
            normalizers.StripAccents(),
            normalizers.Lowercase(),
        ]
    # SentencePiece collapses runs of spaces; offsets still point into the raw text.
    norm.append(normalizers.Replace(Regex(" {2,}"), " "))
    metaspace = pre_tokenizers.Metaspace(replacement=_WORD_MARK, prepend_scheme="always", split=True)
    if arch == "deberta-v2":
        # As transformers converts spm.model today: spaces become "▁" and stay
        # inside the offsets (" world" for "▁world").
        pre_tokenizer = metaspace
    else:
        # As in the tokenizer.json of xlm-roberta-base / albert-base-v2 on the Hub:
        # whitespace is split off first, so offsets exclude it ("world" for
        # "▁world") and a lone "▁" piece overlaps the first character after it.
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    return normalizers.Sequence(norm), pre_tokenizer


def _train_unigram(arch: str):
    from tokenizers import Tokenizer, decoders, models, processors

    sp = _UNIGRAM_SPECIALS[arch]
    normalizer, pre_tokenizer = _unigram_text_pipeline(arch)
    words = _corpus_words(normalizer, pre_tokenizer)
    n_pieces = VOCAB_SIZE - len(sp["head"]) - len(sp["tail"])
    scores = _unigram_scores(words, [p for p in _bpe_pieces(words, n_pieces) if p not in sp["head"] + sp["tail"]])
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    vocab = [(token, 0.0) for token in sp["head"]] + ranked + [(token, 0.0) for token in sp["tail"]]
    ids = {token: i for i, (token, _) in enumerate(vocab)}

    tok = Tokenizer(models.Unigram(vocab, unk_id=ids[sp["unk"]], byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement=_WORD_MARK, prepend_scheme="always", split=True)
    tok.add_special_tokens(sp["head"] + sp["tail"])
    cls, sep = sp["cls"], sp["sep"]
    if arch == "xlm-roberta":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
        )
    return tok


@functools.lru_cache(maxsize=None)
def _trained_tokenizer_json(arch: str) -> str:
    """The trained ``tokenizers`` pipeline for ``arch``, serialised (trained once per process)."""
    if arch in ("bert", "distilbert", "electra"):
        return _train_wordpiece().to_str()
    if arch == "roberta":
        return _train_byte_level_bpe().to_str()
    if arch == "deberta":
        return _train_deberta_bpe().to_str()
    if arch == "modernbert":
        return _train_modernbert_bpe().to_str()
    if arch in _UNIGRAM_SPECIALS:
        return _train_unigram(arch).to_str()
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


def _trained_tokenizer(arch: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(_trained_tokenizer_json(arch))


def build_tokenizer(arch: str):
    """Train the tokenizer for ``arch`` and wrap it in its transformers fast class."""
    import transformers as tf

    common = {"model_max_length": MAX_LENGTH}
    # the special tokens of the two families: <s> ... </s> (RoBERTa, XLM-R), [CLS] ... [SEP] (DeBERTa)
    roberta_specials = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    deberta_specials = dict(bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    if arch in ("bert", "distilbert", "electra"):
        cls = {
            "bert": tf.BertTokenizerFast,
            "distilbert": tf.DistilBertTokenizerFast,
            "electra": tf.ElectraTokenizerFast,
        }[arch]
        return cls(
            tokenizer_object=_trained_tokenizer(arch),
            do_lower_case=True,
            strip_accents=None,
            tokenize_chinese_chars=True,
            unk_token="[UNK]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            mask_token="[MASK]",
            **common,
        )
    if arch == "roberta":
        return tf.RobertaTokenizerFast(
            tokenizer_object=_trained_tokenizer(arch),
            add_prefix_space=False,
            trim_offsets=True,
            **roberta_specials,
            **common,
        )
    if arch == "xlm-roberta":
        return tf.XLMRobertaTokenizerFast(tokenizer_object=_trained_tokenizer(arch), **roberta_specials, **common)
    if arch == "deberta-v2":
        return tf.DebertaV2TokenizerFast(
            tokenizer_object=_trained_tokenizer(arch),
            do_lower_case=False,
            split_by_punct=False,
            **deberta_specials,
            **common,
        )
    if arch == "deberta":
        # DebertaTokenizerFast makes [MASK] eat the space before it (lstrip), as the released one does.
        return tf.DebertaTokenizerFast(
            tokenizer_object=_trained_tokenizer(arch),
            add_prefix_space=False,
            **deberta_specials,
            **common,
        )
    if arch == "modernbert":
        from tokenizers import AddedToken

        # As ModernBERT-base's tokenizer_config.json: the generic fast class, no
        # token_type_ids, 8,192 tokens, and a [MASK] that eats the space before it.
        return tf.PreTrainedTokenizerFast(
            tokenizer_object=_trained_tokenizer(arch),
            unk_token="[UNK]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            mask_token=AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False, special=True),
            model_input_names=["input_ids", "attention_mask"],
            clean_up_tokenization_spaces=True,
            model_max_length=MODERNBERT_MAX_LENGTH,
        )
    if arch == "albert":
        return tf.AlbertTokenizerFast(
            tokenizer_object=_trained_tokenizer(arch),
            do_lower_case=True,
            keep_accents=False,
            bos_token="[CLS]",
            eos_token="[SEP]",
            unk_token="<unk>",
            sep_token="[SEP]",
            pad_token="<pad>",
            cls_token="[CLS]",
            mask_token="[MASK]",
            **common,
        )
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #


def _build_config(spec: CheckpointSpec, tokenizer):
    import transformers as tf

    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        initializer_range=INITIALIZER_RANGE,
    )
    if spec.task not in ("fill-mask", "feature-extraction"):
        labels = _label_names(spec)
        common.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=spec.problem_type,
        )
    bert_like = dict(
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        intermediate_size=INTERMEDIATE_SIZE,
        max_position_embeddings=MAX_LENGTH,
    )
    if spec.arch == "bert":
        return tf.BertConfig(**bert_like, type_vocab_size=2, **common)
    if spec.arch == "electra":
        return tf.ElectraConfig(**bert_like, embedding_size=HIDDEN_SIZE, type_vocab_size=2, **common)
    if spec.arch in ("roberta", "xlm-roberta"):
        # Positions start after the padding index, hence 2 more than the 512 usable ones.
        cfg_cls = tf.RobertaConfig if spec.arch == "roberta" else tf.XLMRobertaConfig
        return cfg_cls(**{**bert_like, "max_position_embeddings": MAX_LENGTH + 2}, type_vocab_size=1, **common)
    if spec.arch == "deberta-v2":
        # DeBERTa-v3 style: relative attention only, no absolute positions, no token types.
        return tf.DebertaV2Config(
            **bert_like,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=64,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pooler_hidden_size=HIDDEN_SIZE,
            pooler_dropout=0.0,
            **common,
        )
    if spec.arch == "deberta":
        # microsoft/deberta-base: relative attention (c2p and p2c), no absolute positions, no token types.
        return tf.DebertaConfig(
            **bert_like,
            type_vocab_size=0,
            relative_attention=True,
            max_relative_positions=-1,
            pos_att_type=["c2p", "p2c"],
            position_biased_input=False,
            layer_norm_eps=1e-7,
            pooler_hidden_size=HIDDEN_SIZE,
            pooler_dropout=0.0,
            **common,
        )
    if spec.arch == "modernbert":
        # answerdotai/ModernBERT-base, shrunk: rotary positions, alternating global and local
        # attention, GeGLU, no biases, mean pooling for classification (as its config.json).
        return tf.ModernBertConfig(
            hidden_size=HIDDEN_SIZE,
            num_hidden_layers=NUM_LAYERS,
            num_attention_heads=NUM_HEADS,
            intermediate_size=INTERMEDIATE_SIZE,
            max_position_embeddings=MODERNBERT_MAX_LENGTH,
            global_attn_every_n_layers=2,
            local_attention=MODERNBERT_LOCAL_ATTENTION,
            classifier_pooling="mean",
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            reference_compile=False,
            **common,
        )
    if spec.arch == "albert":
        return tf.AlbertConfig(**bert_like, embedding_size=16, type_vocab_size=2, **common)
    if spec.arch == "distilbert":
        return tf.DistilBertConfig(
            dim=HIDDEN_SIZE,
            n_layers=NUM_LAYERS,
            n_heads=NUM_HEADS,
            hidden_dim=INTERMEDIATE_SIZE,
            max_position_embeddings=MAX_LENGTH,
            **common,
        )
    raise ValueError(f"unknown architecture {spec.arch!r}; choose one of {ARCHITECTURES}")


def _model_class(task: str):
    import transformers as tf

    return {
        "text-classification": tf.AutoModelForSequenceClassification,
        "token-classification": tf.AutoModelForTokenClassification,
        "question-answering": tf.AutoModelForQuestionAnswering,
        "fill-mask": tf.AutoModelForMaskedLM,
        "feature-extraction": tf.AutoModel,
    }[task]


def _head_linears(model) -> list:
    """The ``nn.Linear`` layers of the task head (everything outside the encoder), in order."""
    import torch

    prefix = model.base_model_prefix
    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name != prefix and not name.startswith(prefix + ".")
    ]


def _calibration_logits(model, tokenizer, task: str):
    """Logits on the calibration sentences, in one padded batch.

    Rows are inputs (text classification) or real tokens (token
    classification), columns are outputs. For question answering rows are
    start and end logits of each sequence over its real positions.
    """
    import torch

    if task == "question-answering":
        pairs = [text.partition("? ") for text in _CALIBRATION_TEXTS]
        enc = tokenizer([q + "?" for q, _, _ in pairs], [c or q for q, _, c in pairs], padding=True, return_tensors="pt")
    else:
        enc = tokenizer(_CALIBRATION_TEXTS, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        out = model(**enc)
    if task == "question-answering":
        return [logits[i][mask[i]] for logits in (out.start_logits, out.end_logits) for i in range(len(mask))]
    if task == "token-classification":
        return out.logits[mask]
    return out.logits


# A slice of the corpus, questions included, to measure and centre the head's output.
_CALIBRATION_TEXTS = [line for line in training_corpus()[::13] if line.strip()][:24] + [
    "What is the capital of France? The capital of France is Paris.",
    "Where was Obama born? Barack Obama was born in Hawaii.",
]


def _calibrate_head(model, tokenizer, task: str) -> None:
    """Make the head's output depend on the input and spread over a few units.

    A random encoder's output has a large part that is the same for every
    input (the [CLS] embedding, the position embeddings), so a random head
    would give every input the same top label. The hidden layers of the head
    are initialised to keep unit variance, the mean logits over the
    calibration sentences are subtracted through the last layer's bias, and
    the last layer is scaled so that the typical spread of the logits of one
    input is ``LOGIT_SPREAD``: well apart, so label order never hangs on
    rounding, and not so far that softmax saturates to 1e-9 scores.
    """
    import torch

    linears = _head_linears(model)
    if not linears:
        raise RuntimeError(f"found no task head outside {model.base_model_prefix!r} in {type(model).__name__}")
    last = linears[-1]
    with torch.no_grad():
        for linear in linears:
            torch.nn.init.normal_(linear.weight, 0.0, 1.0 / linear.in_features**0.5)
            if linear.bias is not None:
                linear.bias.zero_()
        logits = _calibration_logits(model, tokenizer, task)
        if task == "question-answering":
            # Softmax over positions ignores a constant; only the spread over positions counts.
            spread = torch.stack([row.std() for row in logits]).mean()
        elif last.bias is not None:
            last.bias.sub_(logits.mean(dim=0))
            centred = logits - logits.mean(dim=0)
            spread = centred.std(dim=-1).mean() if centred.shape[-1] > 1 else centred.std()
        else:
            spread = logits.std(dim=-1).mean() if logits.shape[-1] > 1 else logits.std()
        scale = LOGIT_SPREAD / max(spread.item(), 1e-6)
        last.weight.mul_(scale)
        if last.bias is not None:
            last.bias.mul_(scale)


def _masked_calibration_batch(tokenizer):
    """The calibration sentences with one token in the middle of each replaced by the mask token."""
    import torch

    enc = tokenizer(_CALIBRATION_TEXTS, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(dim=1)
    rows = torch.arange(len(lengths))
    enc["input_ids"][rows, lengths // 2] = tokenizer.mask_token_id
    return enc, (rows, lengths // 2)


def _mlm_head_parts(model):
    """The last LayerNorm of the masked-LM head, and its output bias over the vocabulary.

    Every architecture here ends its head the same way: dense, activation,
    LayerNorm, then the word embeddings (tied) and a bias over the vocabulary.
    The embeddings are shared with the encoder, so the head is scaled through
    its LayerNorm and centred through its bias, never through the decoder weight.
    """
    import torch

    prefix = model.base_model_prefix
    outside = lambda name: name != prefix and not name.startswith(prefix + ".")  # noqa: E731
    norms = [m for name, m in model.named_modules() if outside(name) and isinstance(m, torch.nn.LayerNorm)]
    vocab = model.config.vocab_size
    biases = [p for name, p in model.named_parameters() if outside(name) and p.dim() == 1 and p.shape[0] == vocab]
    if not norms or len(biases) != 1:
        raise RuntimeError(
            f"{type(model).__name__}: expected a LayerNorm and one vocabulary bias in the masked-LM head, "
            f"found {len(norms)} and {len(biases)}"
        )
    return norms[-1], biases[0]


def _calibrate_mlm_head(model, tokenizer) -> None:
    """Make a masked-LM head's predictions at [MASK] depend on the context and stand well apart.

    Logits are ``s * A + b`` for a scale ``s`` of the head's last LayerNorm and
    its vocabulary bias ``b``: ``b`` takes away the part of ``A`` that is the
    same at every masked position (else every text gets the same top-5), and
    ``s`` spreads the rest to ``MASK_LOGIT_SPREAD`` over the vocabulary.
    """
    import torch

    norm, bias = _mlm_head_parts(model)
    enc, masked = _masked_calibration_batch(tokenizer)
    with torch.no_grad():
        bias.zero_()
        logits = model(**enc).logits[masked]  # [sentences, vocab]
        mean = logits.mean(dim=0)
        spread = (logits - mean).std(dim=-1).mean()
        scale = MASK_LOGIT_SPREAD / max(spread.item(), 1e-6)
        norm.weight.mul_(scale)
        if norm.bias is not None:
            norm.bias.mul_(scale)
        bias.copy_(-scale * mean)


def build_model(spec: CheckpointSpec, tokenizer):
    """A randomly initialised tiny model for ``spec``, deterministic in ``spec.seed``."""
    import torch

    config = _build_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = _model_class(spec.task).from_config(config).eval()
        if spec.task == "fill-mask":
            _calibrate_mlm_head(model, tokenizer)
        elif spec.task != "feature-extraction":  # a bare encoder has no head
            _calibrate_head(model, tokenizer, spec.task)
    return model


def _build(spec: CheckpointSpec, out_dir: Path) -> None:
    tokenizer = build_tokenizer(spec.arch)
    model = build_model(spec, tokenizer)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
