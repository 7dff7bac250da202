"""From the reader's scores to one calibrated number per candidate: the probability that its
sentence holds the answer.

The trained reader gives every span a log-probability among all windows of the question and a
probability that none of them answers (shared-norm, `rag.answering.neural`). A small logistic
regression (`Combiner`) turns that, together with what retrieval and the rules know about the
sentence, into the probability that the sentence holds the answer. It is fitted by
`rag train-reader` on questions held out of the reader's own training, and shipped with the
weights (`manifest.json`, "combiner"), with the abstention threshold chosen on the dev split: no
weight here is set by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .candidates import Candidate

__all__ = ["FEATURES", "Combiner", "candidate_features"]

# Log-probabilities are clipped here: below it, a span is as good as impossible.
LOG_FLOOR = -30.0

# The features, by name (the manifest lists the names it was fitted on).
FEATURES = (
    "log_prob",  # the reader: log P(this sentence's best span) among everything read
    "log_prob_null",  # the reader: log P(no window answers)
    "gap",  # log_prob minus the best log_prob of the question (0 for the best)
    "margin",  # the span's score minus its own window's "no answer" score
    "prior",  # retrieval score of its passage, scaled to [0, 1]
    "doc_rank",  # 1 / (1 + rank of its article among the retrieved ones)
    "lexical",  # share of the question's stems in the sentence
    "typed",  # the sentence holds a phrase of the asked type (wie lange → a duration, …)
    "typed_span",  # the reader's span overlaps that phrase
    "position",  # log(1 + characters before the sentence in its article / 500): news put facts early
    "bm25",  # BM25 score of its passage's best chunk, over the best chunk's
    "chunk_dense",  # e5 similarity of its passage's best chunk to the question
    "window_lexical",  # share of the question's stems in its window
    "doc_lexical",  # share of the question's stems in its article
    "dense",  # e5 similarity of the question to the sentence with the one before it (costs an embedding per sentence)
)


def candidate_features(cands: Sequence[Candidate]) -> np.ndarray:
    """One row of FEATURES per candidate (read or not: an unread one has no log_prob; its row is
    not used)."""
    read = [c.log_prob for c in cands if c.log_prob is not None]
    best = max(read, default=0.0)
    rows = []
    for c in cands:
        lp = max(LOG_FLOOR, c.log_prob) if c.log_prob is not None else LOG_FLOOR
        null = max(LOG_FLOOR, c.log_prob_null) if c.log_prob_null is not None else 0.0
        overlap = c.span is not None and c.phrase is not None and c.span[0] < c.phrase[1] and c.phrase[0] < c.span[1]
        rows.append([
            lp, null, lp - max(LOG_FLOOR, best), max(-30.0, min(30.0, c.span_score)), c.prior, 1.0 / (1 + c.doc_rank),
            c.lexical, float(c.typed), float(overlap), math.log1p(c.start / 500), c.bm25, c.chunk_dense, c.window_lexical,
            c.doc_lexical, c.dense,
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(cands), len(FEATURES))


@dataclass(frozen=True)
class Combiner:
    """Logistic regression over standardised FEATURES; `threshold`: abstain when no candidate's
    probability reaches it."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float

    @property
    def needs_vectors(self) -> bool:
        """Whether it uses the sentences' embeddings (`dense`)."""
        return "dense" in self.features

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        cols = [FEATURES.index(f) for f in self.features]
        z = (x[:, cols] - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def __call__(self, cands: Sequence[Candidate]) -> np.ndarray:
        """P(holds the answer) per candidate; 0.0 for those the reader did not read."""
        if not cands:
            return np.zeros(0)
        p = self.probabilities(candidate_features(cands))
        return np.where([c.log_prob is not None for c in cands], p, 0.0)

    def to_dict(self) -> dict:
        return {
            "features": list(self.features), "mean": list(self.mean), "scale": list(self.scale), "coef": list(self.coef),
            "intercept": self.intercept, "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Combiner":
        unknown = [f for f in d["features"] if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown combiner feature {unknown[0]}")
        return cls(
            tuple(d["features"]), tuple(map(float, d["mean"])), tuple(map(float, d["scale"])), tuple(map(float, d["coef"])),
            float(d["intercept"]), float(d["threshold"]),
        )
