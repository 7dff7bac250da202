"""Abstention: is there enough evidence that the corpus answers the question at all?

Measured apart from the sentence scorer, so that tuning or replacing the ranking does not move
the calibrated thresholds. With a model reader the evidence is the reader's best margin over
"no answer" among the sentences it read (`Config.reader_threshold`); with the heuristic reader it
is the best similarity + overlap of any candidate (`Config.abstain_threshold`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import Config
from .candidates import Candidate

__all__ = ["ABSTAIN_MESSAGE", "Evidence", "evidence", "abstains", "weigh"]

ABSTAIN_MESSAGE = "Das steht nicht im Korpus: keiner der Artikel beantwortet diese Frage."


@dataclass(frozen=True)
class Evidence:
    strength: float
    source: str  # "reader" (margin over no answer) or "similarity" (dense + overlap)


def evidence(candidates: Sequence[Candidate], config: Config) -> float:
    """The strongest support any candidate gives: dense + evidence_lexical_weight·overlap (0.0 for none)."""
    return max((c.dense + config.evidence_lexical_weight * c.lexical for c in candidates), default=0.0)


def weigh(candidates: Sequence[Candidate], config: Config) -> Evidence:
    """The reader's best margin where a reader gave its no-answer opinion, else `evidence()`."""
    margins = [-c.no_answer for c in candidates if c.no_answer is not None]
    if margins:
        return Evidence(max(margins), "reader")
    return Evidence(evidence(candidates, config), "similarity")


def abstains(strength: float | Evidence, config: Config) -> bool:
    """Whether evidence of this strength is too weak to answer."""
    if isinstance(strength, Evidence):
        limit = config.reader_threshold if strength.source == "reader" else config.abstain_threshold
        return strength.strength < limit
    return strength < config.abstain_threshold
