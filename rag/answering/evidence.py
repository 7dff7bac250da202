"""Abstention: is there enough evidence that the corpus answers the question at all?

With the trained reader the evidence is the best calibrated probability that a sentence holds the
answer (`rag.answering.calibration`), against the threshold shipped with the reader (chosen on the
dev split; `Config.reader_threshold` overrides it). With the rules alone it is the best similarity
+ overlap of any candidate (`Config.abstain_threshold`), apart from the rules' ranking so that
tuning the ranking does not move it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import Config
from .candidates import Candidate

__all__ = ["ABSTAIN_MESSAGE", "Evidence", "evidence", "abstains", "weigh", "strays_from_topic"]

ABSTAIN_MESSAGE = "Das steht nicht im Korpus: keiner der Artikel beantwortet diese Frage."


@dataclass(frozen=True)
class Evidence:
    strength: float
    source: str  # "reader" (the calibrated scorer's best score) or "similarity" (dense + overlap)
    limit: float  # abstain below this


def evidence(candidates: Sequence[Candidate], config: Config) -> float:
    """The strongest support any candidate gives: dense + evidence_lexical_weight·overlap (0.0 for none)."""
    return max((c.dense + config.evidence_lexical_weight * c.lexical for c in candidates), default=0.0)


def weigh(candidates: Sequence[Candidate], config: Config, threshold: float | None = None) -> Evidence:
    """With a calibrated scorer (its `threshold`): the best score of a sentence the reader read
    (candidates carry their `score`); else `evidence()` against `Config.abstain_threshold`."""
    if threshold is not None:
        read = [c.score for c in candidates if c.no_answer is not None]
        return Evidence(max(read, default=0.0), "reader", threshold)
    return Evidence(evidence(candidates, config), "similarity", config.abstain_threshold)


def abstains(strength: float | Evidence, config: Config) -> bool:
    """Whether evidence of this strength is too weak to answer (a bare number: similarity evidence)."""
    if isinstance(strength, Evidence):
        return strength.strength < strength.limit
    return strength < config.abstain_threshold


def strays_from_topic(ranked: Sequence[Candidate], config: Config) -> bool:
    """For a follow-up answered in the light of the chat (candidates carry `topic`): whether the best
    answer comes from an article the chat was not about, with a reader margin below
    `Config.stray_margin`, while none of the chat's articles reaches `Config.context_threshold`.
    A follow-up is about the chat's articles; measured on the conversation files, such a weak stray
    answer is mostly wrong, and the unanswerable follow-ups end there, so the answer abstains
    instead. A confident answer from another article stands (the chat may have moved on). False
    without a model reader's opinion or with `context_threshold` None."""
    if not ranked or ranked[0].topic > 0 or config.context_threshold is None:
        return False
    on = [-c.no_answer for c in ranked if c.no_answer is not None and c.topic > 0]
    off = [-c.no_answer for c in ranked if c.no_answer is not None and c.topic == 0]
    if not on and not off:
        return False
    return max(on, default=float("-inf")) < config.context_threshold and max(off, default=float("-inf")) < config.stray_margin
