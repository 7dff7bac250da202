"""Sentence scorers: how the candidate sentences are ranked.

A scorer is any callable ``scorer(question, candidates) -> np.ndarray`` of one score per
candidate (higher is better). It sees the candidates' features (`dense`, `lexical`, `prior`,
`vec`) and the reader's opinion (`span`, `span_score`, `no_answer`). Scorers are chosen by name
(`Config.scorer`) from `SCORERS`. Abstention does not depend on the scorer (rag.answering.evidence).
"""
from __future__ import annotations

import functools
from typing import Protocol, Sequence

import numpy as np

from ..config import Config
from .candidates import Candidate
from .registry import Factory, create

__all__ = ["SentenceScorer", "HeuristicScorer", "SCORERS", "make_scorer"]


class SentenceScorer(Protocol):
    """Optional attributes: `needs_vectors` (default True: the candidates' `dense`/`vec` are set
    before scoring) and `threshold` (a calibrated scorer: abstain when no score reaches it, and
    only candidates at or above it count as agreeing answers; None or absent: the similarity
    evidence decides, rag.answering.evidence)."""

    def __call__(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray: ...


class HeuristicScorer:
    """dense + lexical_weight·overlap + typed_weight·(a phrase of the asked type) + prior_weight·prior
    (+ topic_bonus·topic in a chat)."""

    needs_vectors = True  # `dense`: the answer stage embeds the candidate sentences for it

    def __init__(self, config: Config):
        self.config = config

    def __call__(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        cfg = self.config
        return np.array(
            [
                c.dense + cfg.lexical_weight * c.lexical + cfg.typed_weight * c.typed + cfg.prior_weight * c.prior
                + cfg.topic_bonus * c.topic
                for c in candidates
            ],
            dtype=np.float64,
        )


# Name → factory (see rag.answering.registry).
SCORERS: dict[str, Factory] = {"heuristic": HeuristicScorer, "reader": "rag.answering.neural:ReaderScorer"}


@functools.lru_cache(maxsize=4)
def make_scorer(config: Config) -> SentenceScorer:
    """The scorer `config.scorer` names, made once per configuration ("auto": the reader's calibrated
    probability with a model reader, else the rules)."""
    name = config.scorer
    if name == "auto":
        name = "heuristic" if config.reader == "heuristic" else "reader"
    return create(SCORERS, name, config, "Satzbewerter")
