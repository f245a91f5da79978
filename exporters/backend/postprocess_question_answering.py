"""Postprocess step for question-answering: start/end logits of every window -> answers.

It does what ``pipeline("question-answering")`` does with a fast tokenizer:

* per window: logits of tokens that cannot be in an answer (question, special
  tokens, padding) are masked, start and end are softmaxed, the null score
  (CLS start x CLS end) is kept when ``handle_impossible_answer``, CLS is then
  masked, and the best ``top_k * 2 + 10`` spans no longer than
  ``max_answer_len`` tokens are decoded;
* every window of the pair is scored, and spans are aligned to whole words
  of the context, as the pipeline aligns them;
* the same answer text found in several windows adds its scores up;
* the null answer competes when ``handle_impossible_answer`` is on;
* the ``top_k`` best answers are returned, best first.

``top_k``, ``max_answer_len`` and ``handle_impossible_answer`` may be set per
request through request parameters. Outputs for a request of ``b`` pairs are
``[b, n]``; ``COUNT`` says how many entries of each row are real.
"""

import numpy as np

from tritonize_step import Step, flag, positive_int, strings


def decode_spans(start, end, topk, max_answer_len, undesired_tokens):
    """The pipeline's span decoding, kept shape for shape (its quirks included)."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) <= topk:  # the pipeline's `<` crashes argpartition (kth out of bounds) at `==`
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score, top_k, handle_impossible, max_answer_len):
    """One window, as the pipeline scores it: start/end [1, n], p_mask [n], attention_mask [1, n]."""
    undesired_tokens = np.abs(np.array(p_mask) - 1) & attention_mask
    undesired_mask = undesired_tokens == 0.0
    start = np.where(undesired_mask, -10000.0, start)
    end = np.where(undesired_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def char_span(offsets, word_ids, sequence_ids, s, e):
    """Character span of tokens s..e widened to whole words of the context (sequence 1)."""
    start_word, end_word = word_ids[s], word_ids[e]
    if start_word < 0 or end_word < 0:  # a token outside any word: keep to its offsets
        return int(offsets[s][0]), int(offsets[e][1])
    in_context = sequence_ids == 1
    start_tokens = np.flatnonzero(in_context & (word_ids == start_word))
    end_tokens = np.flatnonzero(in_context & (word_ids == end_word))
    if not len(start_tokens) or not len(end_tokens):
        return int(offsets[s][0]), int(offsets[e][1])
    return int(offsets[start_tokens[0]][0]), int(offsets[end_tokens[-1]][1])


def answer_pair(context, windows, top_k, handle_impossible, max_answer_len):
    """``windows``: list of (start_logits, end_logits, p_mask, offsets, word_ids, sequence_ids)."""
    min_null_score = 1000000.0
    answers = []
    for start_logits, end_logits, p_mask, offsets, word_ids, sequence_ids in windows:
        n = len(p_mask)
        starts, ends, scores, min_null_score = select_starts_ends(
            start_logits[None, :n], end_logits[None, :n], p_mask, np.ones((1, n), dtype=np.int64),
            min_null_score, top_k * 2 + 10, handle_impossible, max_answer_len,
        )
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = char_span(offsets, word_ids, sequence_ids, s, e)
            text = context[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": text})
    if handle_impossible:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


class TritonPythonModel(Step):
    config_parameters = {
        "top_k": ("tritonize.top_k", int, 1),
        "max_answer_len": ("tritonize.max_answer_len", int, 15),
        "handle_impossible_answer": ("tritonize.handle_impossible_answer", bool, False),
    }
    request_parameters = {"top_k": positive_int, "max_answer_len": positive_int, "handle_impossible_answer": flag}

    def preprocess(self, request):
        contexts = strings(request, "CONTEXT")
        names = ("START_LOGITS", "END_LOGITS", "ATTENTION_MASK", "P_MASK", "OFFSETS", "WORD_IDS", "SEQUENCE_IDS")
        return contexts, {name: self.tensor(request, name) for name in names}

    def forward(self, inputs, top_k, max_answer_len, handle_impossible_answer):
        contexts, t = inputs
        masks = t["ATTENTION_MASK"]
        per_pair = []
        for row, context in enumerate(contexts):
            windows = []
            for w in range(masks.shape[1]):
                n = int(masks[row, w].sum())
                if n == 0:
                    continue  # a padded window
                windows.append((
                    t["START_LOGITS"][row, w, :n].astype(np.float32), t["END_LOGITS"][row, w, :n].astype(np.float32),
                    t["P_MASK"][row, w, :n], t["OFFSETS"][row, w, :n], t["WORD_IDS"][row, w, :n],
                    t["SEQUENCE_IDS"][row, w, :n],
                ))
            per_pair.append(answer_pair(context, windows, top_k, handle_impossible_answer, max_answer_len))
        return per_pair

    def postprocess(self, per_pair):
        return self._arrays(per_pair)

    @staticmethod
    def _arrays(per_pair):
        width = max([len(answers) for answers in per_pair] + [0])
        shape = (len(per_pair), width)
        answer = np.full(shape, b"", dtype=object)
        score = np.zeros(shape, dtype=np.float32)
        start = np.full(shape, -1, dtype=np.int64)
        end = np.full(shape, -1, dtype=np.int64)
        for row, answers in enumerate(per_pair):
            for column, a in enumerate(answers):
                answer[row, column] = a["answer"].encode("utf-8")
                score[row, column] = a["score"]
                start[row, column] = a["start"]
                end[row, column] = a["end"]
        count = np.array([[len(answers)] for answers in per_pair], dtype=np.int64)
        return {"ANSWER": answer, "SCORE": score, "START": start, "END": end, "COUNT": count}
