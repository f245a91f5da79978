"""Postprocess step for token-classification: per-token logits -> entities.

It does what ``pipeline("token-classification", aggregation_strategy=...)``
does, window by window, then merges the windows of a long text as the
pipeline does with ``stride``:

* softmax per token; special tokens (and padding) never become entities;
* ``none`` keeps one entry per token; ``simple`` groups adjacent tokens of
  the same tag; ``first``, ``average`` and ``max`` first force agreement
  inside a word, then group;
* B-/I- prefixes start and continue groups; labels without a prefix continue;
* entities whose label is in ``ignore_labels`` (default ``["O"]``) are dropped.

Word boundaries follow the pipeline exactly: with a word-aware tokenizer
(``continuing_subword_prefix``, e.g. WordPiece ``##``) a token is a subword
when its text differs in length from its offsets; otherwise the pipeline's
fallback heuristic (no space before it) is used.

A request may override ``aggregation_strategy`` and ``ignore_labels`` (JSON
list) through request parameters. Outputs for a request of ``b`` texts are
``[b, n]`` with ``n`` the most entities of any of its texts; ``COUNT`` says
how many entries of each row are real (the rest is padding).
"""

import numpy as np
from tokenizers import Tokenizer

from tritonize_step import Step, one_of, string_list, strings

STRATEGIES = ("none", "simple", "first", "average", "max")


def _tag(label):
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # no prefix: a continuation


class EntityDecoder:
    """The pipeline's postprocess for one text, in numpy."""

    def __init__(self, tokenizer, labels, unk_token_id):
        self.tokenizer = tokenizer
        self.labels = labels
        self.unk_token_id = unk_token_id
        self.word_aware = bool(getattr(tokenizer.model, "continuing_subword_prefix", None))

    def tokens_to_string(self, tokens):
        decoder = self.tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def entities(self, text, windows, strategy, ignore_labels):
        """``windows``: list of (input_ids, offsets, special_mask, logits) of one text."""
        found = []
        for input_ids, offsets, special, logits in windows:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            scores = shifted / shifted.sum(axis=-1, keepdims=True)
            pre = self.pre_entities(text, input_ids, scores, offsets, special)
            grouped = self.aggregate(pre, strategy)
            found.extend(
                e for e in grouped
                if e.get("entity") not in ignore_labels and e.get("entity_group") not in ignore_labels
            )
        if len(windows) > 1:
            found = self.merge_overlaps(found)
        return found

    def pre_entities(self, text, input_ids, scores, offsets, special):
        pre = []
        for index, token_scores in enumerate(scores):
            if special[index]:
                continue
            token_id = int(input_ids[index])
            word = self.tokenizer.id_to_token(token_id)
            start, end = int(offsets[index][0]), int(offsets[index][1])
            reference = text[start:end]
            if self.word_aware:
                is_subword = len(word) != len(reference)
            else:
                is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            if token_id == self.unk_token_id:
                word = reference
                is_subword = False
            pre.append({"word": word, "scores": token_scores, "start": start, "end": end,
                        "index": index, "is_subword": is_subword})
        return pre

    def aggregate(self, pre, strategy):
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = int(p["scores"].argmax())
                entities.append({"entity": self.labels[best], "score": p["scores"][best], "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
        else:
            entities = self.aggregate_words(pre, strategy)
        if strategy == "none":
            return entities
        return self.group_entities(entities)

    def aggregate_word(self, group, strategy):
        word = self.tokens_to_string([p["word"] for p in group])
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda p: p["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([p["scores"] for p in group]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.labels[best], "score": scores[best], "word": word,
                "start": group[0]["start"], "end": group[-1]["end"]}

    def aggregate_words(self, pre, strategy):
        words, group = [], None
        for p in pre:
            if group is None:
                group = [p]
            elif p["is_subword"]:
                group.append(p)
            else:
                words.append(self.aggregate_word(group, strategy))
                group = [p]
        if group is not None:
            words.append(self.aggregate_word(group, strategy))
        return words

    def group_sub_entities(self, entities):
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean(np.nanmean([e["score"] for e in entities]))),
            "word": self.tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def group_entities(self, entities):
        groups, current = [], []
        for entity in entities:
            if not current:
                current.append(entity)
                continue
            bi, tag = _tag(entity["entity"])
            _, last_tag = _tag(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(entity)
            else:
                groups.append(self.group_sub_entities(current))
                current = [entity]
        if current:
            groups.append(self.group_sub_entities(current))
        return groups

    @staticmethod
    def merge_overlaps(entities):
        """Entities seen in two overlapping windows: keep the longer (then the surer) one."""
        if not entities:
            return entities
        entities = sorted(entities, key=lambda e: e["start"])
        merged, previous = [], entities[0]
        for entity in entities:
            if previous["start"] <= entity["start"] < previous["end"]:
                length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
                if length > previous_length or length == previous_length and entity["score"] > previous["score"]:
                    previous = entity
            else:
                merged.append(previous)
                previous = entity
        merged.append(previous)
        return merged


class TritonPythonModel(Step):
    config_parameters = {
        "labels": ("tritonize.labels", "json", []),
        "unk_token_id": ("tritonize.unk_token_id", int, None),
        "aggregation_strategy": ("tritonize.aggregation_strategy", str, "simple"),
        "ignore_labels": ("tritonize.ignore_labels", "json", ["O"]),
    }
    request_parameters = {"aggregation_strategy": one_of(*STRATEGIES), "ignore_labels": string_list}

    def setup(self):
        tokenizer = Tokenizer.from_file(self.file("tokenizer.json"))
        self.decoder = EntityDecoder(tokenizer, self.labels, self.unk_token_id)

    def preprocess(self, request):
        return (strings(request, "TEXT"), self.tensor(request, "INPUT_IDS"), self.tensor(request, "OFFSETS"),
                self.tensor(request, "SPECIAL_TOKENS_MASK"), self.tensor(request, "LOGITS"))

    def forward(self, inputs, aggregation_strategy, ignore_labels):
        texts, ids, offsets, special, logits = inputs
        per_text = []
        for row, text in enumerate(texts):
            windows = [
                (ids[row, w], offsets[row, w], special[row, w], logits[row, w].astype(np.float32))
                for w in range(ids.shape[1])
                if not special[row, w].all()  # padded window, or a window of special tokens only
            ]
            per_text.append(self.decoder.entities(text, windows, aggregation_strategy, ignore_labels)
                            if windows else [])
        return per_text, aggregation_strategy

    def postprocess(self, results):
        return self._arrays(*results)

    @staticmethod
    def _arrays(per_text, strategy):
        width = max([len(entities) for entities in per_text] + [0])
        shape = (len(per_text), width)
        entity = np.full(shape, b"", dtype=object)
        word = np.full(shape, b"", dtype=object)
        score = np.zeros(shape, dtype=np.float32)
        start = np.full(shape, -1, dtype=np.int64)
        end = np.full(shape, -1, dtype=np.int64)
        index = np.full(shape, -1, dtype=np.int64)
        key = "entity" if strategy == "none" else "entity_group"
        for row, entities in enumerate(per_text):
            for column, e in enumerate(entities):
                entity[row, column] = e[key].encode("utf-8")
                word[row, column] = e["word"].encode("utf-8")
                score[row, column] = e["score"]
                start[row, column] = e["start"]
                end[row, column] = e["end"]
                index[row, column] = e.get("index", -1)
        count = np.array([[len(entities)] for entities in per_text], dtype=np.int64)
        return {"ENTITY": entity, "SCORE": score, "WORD": word, "START": start, "END": end, "INDEX": index,
                "COUNT": count}
