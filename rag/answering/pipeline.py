"""The answer stage, step by step: retrieval's passages → candidate sentences → features →
reader (answering spans) → scorer (ranking) → evidence (abstain?) → corroboration → quotes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..config import Config
from ..retrieval import Filters, Passage, find_candidates
from .agreement import Agreement, agreement_of, corroborating
from .candidates import Candidate, embed_features, sentences_of
from .evidence import ABSTAIN_MESSAGE, abstains, weigh
from .phrases import SELECTIVE_KINDS, find_phrase, question_type
from .quotes import assemble_quotes
from .reading import Reader, make_reader
from .scoring import HeuristicScorer, SentenceScorer, make_scorer

if TYPE_CHECKING:
    from ..store import Index

__all__ = ["Answer", "answer", "gather", "read", "rank"]


@dataclass
class Answer:
    question: str
    passages: list[Passage]
    abstained: bool
    confidence: float
    agreement: Agreement | None = None
    message: str = ""

    @property
    def phrase(self) -> str:
        """The answering phrase of the best passage ('' when abstained)."""
        return "" if self.abstained or not self.passages else self.passages[0].answer_text

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "abstained": self.abstained,
            "message": self.message,
            "phrase": self.phrase,
            "confidence": round(self.confidence, 4),
            "agreement": self.agreement.to_dict() if self.agreement else None,
            "passages": [p.to_dict() for p in self.passages],
        }


def answer(
    index: "Index",
    question: str,
    k: int = 3,
    mode: str | None = None,
    filters: Filters | None = None,
    *,
    scorer: SentenceScorer | None = None,
    reader: Reader | None = None,
) -> Answer:
    """Quoted answer to `question` from `index`: up to k quotes, the best answer first, then the
    articles that corroborate it, then the best sentences of further articles; abstains when the
    evidence is too weak. `scorer` and `reader` default to those `index.config` names."""
    cfg = index.config
    found = find_candidates(index, question, mode, filters)
    q = found.question
    if not found.passages[: cfg.answer_pool]:
        return Answer(question=q, passages=[], abstained=True, confidence=0.0, message=ABSTAIN_MESSAGE)
    kind = question_type(q)
    ranked = rank(index, q, gather(index, q, found.passages, kind), scorer or make_scorer(cfg), reader or make_reader(cfg))
    support = weigh(ranked, cfg)
    confidence = support.strength
    abstained = abstains(support, cfg)
    text_of = _text_of(index)
    # Articles that say the same as the best answer are quoted first, so the user sees the agreement.
    group = [] if abstained else corroborating(ranked, kind, text_of, cfg)[:k]
    best = ranked[0]
    first = [c for c, _ in group]
    ordered = [best] + [c for c in first if c is not best] + [c for c in ranked[: cfg.quote_window * k] if c is not best and c not in first]
    passages = assemble_quotes(index, ordered, [best, *first], ranked, k)
    agreement = _agreement(group, passages, best.score, kind, cfg) if group else None
    message = ABSTAIN_MESSAGE if abstained else passages[0].answer_text
    return Answer(
        question=q, passages=[] if abstained else passages, abstained=abstained, confidence=confidence, agreement=agreement, message=message
    )


def gather(index: "Index", question: str, passages: list[Passage], kind: str | None) -> list[Candidate]:
    """The candidate sentences: every sentence of the best `answer_pool` passages, and for
    durations, dates and numbers up to `typed_extra` sentences with a phrase of that kind from
    the passages further down."""
    cfg = index.config
    pool = passages[: cfg.answer_pool]
    top = max(p.score for p in pool)
    seen: set[tuple[str, int]] = set()
    cands = sentences_of(index, pool, top, seen)
    if kind in SELECTIVE_KINDS and cfg.typed_extra:
        # A duration or date mentioned in passing ("bei dem gut zweistündigen Gespräch") sits in a
        # chunk about something else and ranks low.
        def typed(text: str) -> bool:
            return find_phrase(text, kind, question, cfg) is not None

        cands += sentences_of(index, passages[cfg.answer_pool :], top, seen, keep=typed, limit=cfg.typed_extra)
    return cands


def read(index: "Index", question: str, cands: list[Candidate], reader: Reader) -> None:
    """Let the reader mark the answering span of every candidate."""
    for c, r in zip(cands, reader(question, cands, index), strict=True):
        c.span, c.span_score, c.no_answer = r.span, r.score, r.no_answer


def rank(index: "Index", question: str, cands: list[Candidate], scorer: SentenceScorer, reader: Reader) -> list[Candidate]:
    """The candidates with features, spans and scores, best first. The mode chooses how candidate
    passages are found; sentences are always ranked by the same scorer, so abstention means the
    same thing in every mode."""
    embed_features(index, question, cands)
    read(index, question, cands, reader)
    # The rules' score too: corroboration compares articles in its units, whatever the ranking.
    heuristic = HeuristicScorer(index.config)(question, cands)
    for c, s, h in zip(cands, scorer(question, cands), heuristic, strict=True):
        c.score, c.heuristic = float(s), float(h)
    return sorted(cands, key=lambda c: -c.score)


def _agreement(
    group: list[tuple[Candidate, str]], passages: list[Passage], best_score: float, kind: str | None, cfg: Config
) -> Agreement | None:
    """The best answer, the articles that corroborate it, then strong quotes of further articles
    (agreement_of keeps those that contradict it in comparable terms)."""
    pairs = [(c.doc_id, p) for c, p in group]
    grouped = {d for d, _ in pairs}
    for p in passages:
        if p.phrase and p.doc_id not in grouped and p.score >= best_score - cfg.agreement_margin:
            pairs.append((p.doc_id, p.answer_text))
            grouped.add(p.doc_id)
    return agreement_of(pairs, kind, cfg.agreement_tolerance)


def _text_of(index: "Index") -> Callable[[str], str]:
    return lambda doc_id: index.documents[doc_id].text
