"""Abstention: is there enough evidence that the corpus answers the question at all?

Measured apart from the sentence scorer, so that tuning or replacing the ranking does not move
the calibrated threshold (`Config.abstain_threshold`).
"""
from __future__ import annotations

from typing import Sequence

from ..config import Config
from .candidates import Candidate

__all__ = ["ABSTAIN_MESSAGE", "evidence", "abstains"]

ABSTAIN_MESSAGE = "Das steht nicht im Korpus: keiner der Artikel beantwortet diese Frage."


def evidence(candidates: Sequence[Candidate], config: Config) -> float:
    """The strongest support any candidate gives: dense + evidence_lexical_weight·overlap (0.0 for none)."""
    return max((c.dense + config.evidence_lexical_weight * c.lexical for c in candidates), default=0.0)


def abstains(strength: float, config: Config) -> bool:
    """Whether evidence of this strength is too weak to answer."""
    return strength < config.abstain_threshold
