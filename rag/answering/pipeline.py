"""The answer stage, step by step: retrieval's passages → candidate sentences → features →
reader (answering spans) → scorer (ranking) → evidence (abstain?) → corroboration → quotes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ..config import Config
from ..conversation import Context, clean_history, contextual_candidates, topic_after
from ..retrieval import Filters, Passage, clean_question, find_candidates
from .agreement import Agreement, agreement_of, corroborating
from .candidates import Candidate, embed_features, sentences_of
from .evidence import ABSTAIN_MESSAGE, abstains, strays_from_topic, weigh
from .phrases import SELECTIVE_KINDS, find_phrase, question_type
from .quotes import assemble_quotes
from .reading import Reader, make_reader
from .scoring import HeuristicScorer, SentenceScorer, make_scorer

if TYPE_CHECKING:
    from ..store import Index

__all__ = ["Answer", "answer", "chat_topic", "gather", "read", "rank"]


@dataclass
class Answer:
    question: str
    passages: list[Passage]
    abstained: bool
    confidence: float
    agreement: Agreement | None = None
    message: str = ""
    context: str | None = None  # the earlier question of the chat this answer leaned on (None: asked on its own)

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
            "context": self.context,
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
    history: Sequence[str] | None = (),
) -> Answer:
    """Quoted answer to `question` from `index`: up to k quotes, the best answer first, then the
    articles that corroborate it, then the best sentences of further articles; abstains when the
    evidence is too weak. `scorer` and `reader` default to those `index.config` names.

    `history`: the chat's earlier questions, oldest first; a follow-up is answered in their light
    (rag.conversation) and `Answer.context` names the question it leaned on."""
    cfg = index.config
    turns = clean_history(history, cfg.history_turns, cfg.max_question_chars)
    if turns:
        clean_question(question, cfg.max_question_chars)  # a bad question fails before the chat's turns are looked up
    topic = chat_topic(index, turns, k, mode, filters, scorer, reader)
    return _answer(index, question, k, mode, filters, scorer, reader, turns, topic)[0]


def _answer(
    index: "Index", question: str, k: int, mode: str | None, filters: Filters | None,
    scorer: SentenceScorer | None, reader: Reader | None, turns: tuple[str, ...], topic: dict[str, float],
) -> tuple[Answer, dict[str, float]]:
    """`answer` for a question after the (cleaned) chat `turns`, which left the chat about `topic`;
    and the topic this answer leaves the chat with (remembered for the configured scorer and reader)."""
    cfg = index.config
    context: Context | None = None
    if turns:
        found, context = contextual_candidates(index, question, turns[-1], topic, mode, filters)
    else:
        found = find_candidates(index, question, mode, filters)
    q = found.question
    leaned_on = context.question if context else None
    if not found.passages[: cfg.answer_pool]:
        result = Answer(question=q, passages=[], abstained=True, confidence=0.0, message=ABSTAIN_MESSAGE, context=leaned_on)
        return result, _leave(index, result, turns, topic, k, mode, filters, scorer is None and reader is None)
    kind = question_type(q)
    cands = gather(index, q, found.passages, kind)
    if context is not None:
        for c in cands:
            c.topic = context.articles.get(c.doc_id, 0.0)
    ranked = rank(index, q, cands, scorer or make_scorer(cfg), reader or make_reader(cfg), leaned_on)
    support = weigh(ranked, cfg)
    confidence = support.strength
    abstained = abstains(support, cfg) or (context is not None and strays_from_topic(ranked, cfg))
    text_of = _text_of(index)
    # Articles that say the same as the best answer are quoted first, so the user sees the agreement.
    group = [] if abstained else corroborating(ranked, kind, text_of, cfg)[:k]
    best = ranked[0]
    first = [c for c, _ in group]
    ordered = [best] + [c for c in first if c is not best] + [c for c in ranked[: cfg.quote_window * k] if c is not best and c not in first]
    passages = assemble_quotes(index, ordered, [best, *first], ranked, k)
    agreement = _agreement(group, passages, best.score, kind, cfg) if group else None
    message = ABSTAIN_MESSAGE if abstained else passages[0].answer_text
    result = Answer(
        question=q, passages=[] if abstained else passages, abstained=abstained, confidence=confidence, agreement=agreement,
        message=message, context=leaned_on,
    )
    return result, _leave(index, result, turns, topic, k, mode, filters, scorer is None and reader is None)


def chat_topic(
    index: "Index", turns: tuple[str, ...], k: int, mode: str | None, filters: Filters | None,
    scorer: SentenceScorer | None = None, reader: Reader | None = None,
) -> dict[str, float]:
    """The articles a chat of these (cleaned) questions is about after its last turn → weight
    (rag.conversation.topic_after). Remembered per index version: in a chat, the previous turn's
    answer left it behind; otherwise the earlier turns are answered once, in order."""
    if not turns:
        return {}
    key = _topic_key(index, turns, k, mode, filters)
    if scorer is None and reader is None:
        known = index.recall(key)
        if known is not None:
            return known
    before = chat_topic(index, turns[:-1], k, mode, filters, scorer, reader)
    return _answer(index, turns[-1], k, mode, filters, scorer, reader, turns[:-1], before)[1]


def _topic_key(index: "Index", turns: tuple[str, ...], k: int, mode: str | None, filters: Filters | None) -> tuple:
    f = None if filters is None else (
        None if filters.doc_ids is None else tuple(sorted(filters.doc_ids)), filters.date_from, filters.date_to
    )
    return ("chat-topic", index.config, turns, k, mode, f)


def _leave(
    index: "Index", result: Answer, turns: tuple[str, ...], topic: dict[str, float], k: int, mode: str | None, filters: Filters | None,
    memo: bool,
) -> dict[str, float]:
    """The topic this answer leaves its chat with; kept for the chat's next question when `memo`."""
    cfg = index.config
    after = topic_after([p.doc_id for p in result.passages], topic, cfg.topic_decay, cfg.topic_articles)
    if memo:
        index.remember(_topic_key(index, (*turns, result.question), k, mode, filters), after)
    return after


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


def rank(
    index: "Index", question: str, cands: list[Candidate], scorer: SentenceScorer, reader: Reader, context: str | None = None
) -> list[Candidate]:
    """The candidates with features, spans and scores, best first. The mode chooses how candidate
    passages are found; sentences are always ranked by the same scorer, so abstention means the
    same thing in every mode. `context`: the earlier question a follow-up leans on."""
    # A follow-up's reader reads it with the question it leaned on appended: „Wie heißt dieser
    # Berater?“ alone does not say which adviser (measured: README, Conversations).
    asked = f"{question} {context}" if context and index.config.context_reader else question
    embed_features(index, question, cands)
    read(index, asked, cands, reader)
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
