"""What every student shares around its model: turning scores into grades 0–3 (cut points fitted to the
teacher's grade shares) and the keyword-stuffing defence applied to passages before they are graded."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import QrelkitError
from ..records import GRADES, Pair

_STOP = set(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "my",
        "me",
        "we",
        "our",
        "us",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+")


def content_terms(text: str) -> set[str]:
    # A 6-character prefix is a cheap stemmer: "vaccines"/"vaccination" → "vaccin".
    return {t[:6] for t in _TOKEN.findall(text.lower()) if t not in _STOP}


def is_content_piece(piece: str) -> bool:
    """Whether a tokenizer piece carries content: a word continuation (``##ing``) or an alphanumeric word that is
    not a stop word (``▁``/``Ġ`` word-start marks of SentencePiece and byte-level BPE ignored)."""
    if piece.startswith("##"):
        return True
    word = piece.lstrip("▁Ġ").lower()
    return word.isalnum() and word not in _STOP


_SPACES = re.compile(r"\W+")


def strip_query_echoes(query: str, text: str) -> str:
    """``text`` without the copies of ``query`` that answer nothing: the keyword-stuffing defence.

    A copy is stuffing when it stands alone (a sentence of its own, or after a lead-in clause: "This passage
    answers the question: <query>.", and the whole sentence goes) or repeats (every copy after the first). A
    copy inside a sentence ("the guest wifi password changes weekly") is how relevant passages talk, and stays.
    Case, spacing and punctuation inside the copy are ignored; queries of one content word are left alone."""
    if len(content_terms(query)) < 2:
        return text
    words = [w for w in _SPACES.split(query.lower()) if w]
    copy = r"\W*".join(re.escape(w) for w in words)
    # a sentence that is the copy, or a lead-in clause ending in ":" and then the copy: the whole sentence goes
    alone = re.compile(r"(^|[.!?\n])(?:[^.!?\n:]*:)?[\s\"'(\[]*" + copy + r"[\s\"')\]]*(?:[.!?;]+|$)", re.IGNORECASE)
    stripped = alone.sub(r"\1 ", text)
    anywhere = re.compile(r"\b" + copy + r"\b", re.IGNORECASE)
    seen = 0

    def keep_first(m: re.Match[str]) -> str:
        nonlocal seen
        seen += 1
        return m.group(0) if seen == 1 else " "

    stripped = anywhere.sub(keep_first, stripped)
    return " ".join(stripped.split()) if stripped != text else text


_WORD = re.compile(r"\S+")


def clip_words(text: str, words: int) -> str:
    """``text`` up to the end of its ``words``-th whitespace-separated word. A word is at least one token, so a
    tokenizer that truncates at ``words`` tokens or fewer reads the same tokens from the clipped text, without
    first tokenizing all of a long document (a 450,000-character TREC passage took a fifth of a labeling run)."""
    if len(text) < 2 * words:  # too short to hold more than ``words`` words
        return text
    for i, m in enumerate(_WORD.finditer(text), 1):
        if i == words:
            return text[: m.end()]
    return text


def clip_for_tokens(text: str, max_length: int) -> str:
    """``text`` as an encoder that reads at most ``max_length`` tokens of it sees it: clipped after twice as many
    words (one word is one token or more, so the margin only spares the tokenizer a long tail)."""
    return clip_words(text, 2 * max_length)


def grades_from_thresholds(thresholds: Sequence[float], scores: np.ndarray) -> np.ndarray:
    """Grades 0–3 from scores and the ordinal cut points t1 ≤ t2 ≤ t3 (a score equal to a cut goes above it)."""
    return np.searchsorted(np.asarray(thresholds), scores, side="right").astype(int)


def distribution_thresholds(scores: np.ndarray, grades: np.ndarray) -> list[float]:
    """Cut points t1 ≤ t2 ≤ t3 so that the share of scores below each equals the teacher's share of lower grades."""
    if len(grades) == 0:
        raise QrelkitError("no teacher-graded pairs to fit the grade cut points on")
    counts = np.array([(grades == g).sum() for g in GRADES], dtype=float)
    cum = np.cumsum(counts)[:-1] / counts.sum()
    return [float(np.quantile(scores, q)) for q in cum]


class ThresholdGrader:
    """``predict`` and ``predict_pairs`` for a student that has ``scores`` (one number a pair, higher = more
    relevant) and ``thresholds`` (cut points fitted to the teacher's grade shares)."""

    thresholds: list[float] | None
    default_batch_size = 64

    def scores(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and 0–3 grades for query–document pairs."""
        if self.thresholds is None:
            raise QrelkitError(f"this {type(self).__name__} has no grade thresholds: train or calibrate it first")
        s = self.scores(queries, docs, batch_size=batch_size or self.default_batch_size)
        return s, grades_from_thresholds(self.thresholds, s)

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.predict([p.query for p in pairs], [p.text for p in pairs], batch_size=batch_size)
