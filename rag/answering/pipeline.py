"""The answer stage, step by step: retrieval's passages → candidate sentences → features →
reader (answering spans) → scorer (ranking) → evidence (abstain?) → corroboration → quotes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from ..config import Config
from ..conversation import ChatState, Context, clean_history, contextual_candidates, subject_of
from ..retrieval import Candidates, Filters, Passage, clean_question, find_candidates
from .agreement import Agreement, agreement_of, corroborating
from .candidates import Candidate, context_features, embed_features, lexical_features, sentences_of
from .evidence import ABSTAIN_MESSAGE, Evidence, abstains, strays_from_topic, weigh
from .phrases import SELECTIVE_KINDS, asks_for_source, find_phrase, question_type, source_phrase
from .quotes import assemble_quotes
from .reading import Reader, accepts_avoid, make_reader, overlaps
from .scoring import SentenceScorer, make_scorer
from .windows import plan_reading

if TYPE_CHECKING:
    from ..store import Index

__all__ = ["Answer", "TurnReading", "answer", "chat_state", "gather", "prepare", "planned_windows", "read", "read_turn", "rank"]


@dataclass
class Answer:
    question: str
    passages: list[Passage]
    abstained: bool
    # How sure the answer stage is: with the trained reader the probability (0–1) that the first
    # quote's sentence holds the answer (rag.answering.calibration); with the rules alone the best
    # sentence's similarity + overlap (rag.answering.evidence).
    confidence: float
    agreement: Agreement | None = None
    message: str = ""
    context: str | None = None  # the earlier question of the chat this answer leaned on (None: asked on its own)
    # When abstained: the quotes it would have given, best first (not shown as an answer; for
    # evaluation — a risk–coverage table needs every question's best guess — and for inspection).
    withheld: list[Passage] = field(default_factory=list)

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
            "withheld": [p.to_dict() for p in self.withheld],
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

    `history`: the chat's earlier questions, oldest first. The question is read on its own and, where
    it does not name its own topic, in the light of the chat (rag.conversation); `choose_reading`
    says which reading answers, and `Answer.context` names the question that set the chat's subject
    when the answer stays with it."""
    cfg = index.config
    turns = clean_history(history, cfg.history_turns, cfg.max_question_chars)
    if turns:
        clean_question(question, cfg.max_question_chars)  # a bad question fails before the chat's turns are looked up
    state = chat_state(index, turns, k, mode, filters, scorer, reader)
    return _answer(index, question, k, mode, filters, scorer, reader, turns, state)[0]


@dataclass
class TurnReading:
    """One way of reading a question: its candidates ranked best first, and the evidence for the best."""

    question: str
    ranked: list[Candidate]
    support: Evidence
    context: Context | None  # the chat it was read in the light of (None: on its own)


def read_turn(
    index: "Index", found: Candidates, context: Context | None, scorer: SentenceScorer, reader: Reader,
    avoid: Sequence[tuple[str, int, int]] = (),
) -> TurnReading | None:
    """The question of `found` read through the answer stage (None: no passage to read). `avoid`:
    the chat's earlier answers (doc id, start, end), which no span of this reading may touch: a
    follow-up asks for something new („Und wer hat das gemeldet?“ after „Wie lange …?“)."""
    cfg = index.config
    if not found.passages[: cfg.answer_pool]:
        return None
    q = found.question
    cands = gather(index, q, found.passages, question_type(q))
    if context is not None:
        for c in cands:
            c.topic = context.articles.get(c.doc_id, 0.0)
    ranked = rank(index, q, cands, scorer, reader, context.question if context else None, avoid)
    return TurnReading(q, ranked, weigh(ranked, cfg, getattr(scorer, "threshold", None)), context)


def _answer(
    index: "Index", question: str, k: int, mode: str | None, filters: Filters | None,
    scorer: SentenceScorer | None, reader: Reader | None, turns: tuple[str, ...], state: ChatState,
) -> tuple[Answer, ChatState]:
    """`answer` for a question after the (cleaned) chat `turns`, which left the chat in `state`; and
    the state this answer leaves the chat in (remembered for the configured scorer and reader)."""
    cfg = index.config
    memo = scorer is None and reader is None  # only the configured components' chats are remembered
    scorer = scorer or make_scorer(cfg)
    reader = reader or make_reader(cfg)
    threshold = getattr(scorer, "threshold", None)
    chat: TurnReading | None = None
    if turns and state.topic:
        # With a calibrated reader the question is read alone as well, so the chat's reading may keep
        # to the chat's articles (Config.chat_reads_topic).
        within = cfg.chat_reads_topic and threshold is not None
        in_chat, context = contextual_candidates(index, question, state.anchor or turns[-1], state.topic, mode, filters, within)
        if context is not None:  # the question does not name its own topic: the chat may hold its subject
            chat = read_turn(index, in_chat, context, scorer, reader, state.answered)
    alone: TurnReading | None = None
    if chat is None or threshold is not None:
        # Without a calibrated probability to judge the readings by, a follow-up is read in the
        # chat's light only (round 2).
        alone = read_turn(index, find_candidates(index, question, mode, filters), None, scorer, reader)
    chosen, abstained = choose_reading(alone, chat, cfg)
    if chosen is None:
        q = clean_question(question, cfg.max_question_chars)
        result = Answer(question=q, passages=[], abstained=True, confidence=0.0, message=ABSTAIN_MESSAGE)
        return result, _leave(index, result, False, turns, state, k, mode, filters, memo)
    q, ranked, support = chosen.question, chosen.ranked, chosen.support
    # „Bezogen auf“: the chat's subject, when the answer stays with it — read in the chat's light, or
    # read on its own but found in the chat's articles (a follow-up whose words suffice).
    # An abstention leans on nothing.
    stays = not abstained and (chosen.context is not None or (chat is not None and chosen.ranked[0].doc_id in state.topic))
    leaned_on = (state.anchor or turns[-1]) if stays else None
    kind = question_type(q)
    text_of = _text_of(index)
    # Articles that say the same as the best answer are quoted first, so the user sees the agreement.
    def embed(cands: list[Candidate]) -> None:
        embed_features(index, q, [c for c in cands if c.vec is None])

    group = [] if abstained else corroborating(ranked, kind, text_of, cfg, threshold, embed)[:k]
    best = ranked[0]
    first = [c for c, _ in group]
    ordered = [best] + [c for c in first if c is not best] + [c for c in ranked[: cfg.quote_window * k] if c is not best and c not in first]
    passages = assemble_quotes(index, ordered, [best, *first], ranked, k)
    agreement = _agreement(group, passages, best.score, kind, cfg, threshold) if group else None
    message = ABSTAIN_MESSAGE if abstained else passages[0].answer_text
    result = Answer(
        question=q, passages=[] if abstained else passages, abstained=abstained, confidence=support.strength, agreement=agreement,
        message=message, context=leaned_on, withheld=passages if abstained else [],
    )
    # The subject is set by a question read on its own where the chat offered no reading of it (the
    # first turn, or one that names its own topic); a follow-up answered on its own keeps it.
    return result, _leave(index, result, chat is None, turns, state, k, mode, filters, memo)


def choose_reading(alone: TurnReading | None, chat: TurnReading | None, cfg: Config) -> tuple[TurnReading | None, bool]:
    """Which reading answers a question, and whether it abstains. A follow-up (one with a chat
    reading) is answered in the chat's light when the reader accepts that reading — at least
    `Config.follow_up_threshold`: the reader and its combiner were calibrated on questions alone,
    and the anchor's subject beside a follow-up lifts its overlap with every sentence of the
    chat's articles —, unless the reader is `Config.follow_up_alone_ratio` times surer of the
    question alone (a self-contained question the topic test took for a follow-up). When the chat's
    reading is not accepted, the question alone answers only when the reader is sure of it at least
    by `Config.follow_up_fallback`: a question that reads as a follow-up but finds nothing in the
    chat's articles is mostly about something no article holds (measured: README, Conversations).
    Abstaining, the surer reading is the one withheld."""
    if chat is None:
        return alone, alone is not None and abstains(alone.support, cfg)
    if alone is None:  # the rules-only reader: the chat's reading alone (round 2)
        return chat, abstains(chat.support, cfg) or strays_from_topic(chat.ranked, cfg)
    accepted = chat.support.strength >= max(chat.support.limit, cfg.follow_up_threshold)
    surer = alone.support.strength >= cfg.follow_up_alone_ratio * chat.support.strength
    if accepted and not surer:
        return chat, False
    if not abstains(alone.support, cfg) and (accepted or alone.support.strength >= cfg.follow_up_fallback):
        return alone, False
    return max((chat, alone), key=lambda r: r.support.strength), True


def chat_state(
    index: "Index", turns: tuple[str, ...], k: int, mode: str | None, filters: Filters | None,
    scorer: SentenceScorer | None = None, reader: Reader | None = None,
) -> ChatState:
    """Where a chat of these (cleaned) questions stands after its last turn (rag.conversation.ChatState).
    Remembered per index version: in a chat, the previous turn's answer left it behind; otherwise
    the earlier turns are answered once, in order."""
    if not turns:
        return ChatState({})
    key = _chat_key(index, turns, k, mode, filters)
    if scorer is None and reader is None:
        known = index.recall(key)
        if known is not None:
            return known
    before = chat_state(index, turns[:-1], k, mode, filters, scorer, reader)
    return _answer(index, turns[-1], k, mode, filters, scorer, reader, turns[:-1], before)[1]


def _chat_key(index: "Index", turns: tuple[str, ...], k: int, mode: str | None, filters: Filters | None) -> tuple:
    f = None if filters is None else (
        None if filters.doc_ids is None else tuple(sorted(filters.doc_ids)), filters.date_from, filters.date_to
    )
    return ("chat-state", index.config, turns, k, mode, f)


def _leave(
    index: "Index", result: Answer, sets_subject: bool, turns: tuple[str, ...], state: ChatState, k: int,
    mode: str | None, filters: Filters | None, memo: bool,
) -> ChatState:
    """The state this answer leaves its chat in; kept for the chat's next question when `memo`.
    With `sets_subject` the question becomes the chat's anchor (what „Bezogen auf“ names)."""
    cfg = index.config
    given: list[tuple[str, int, int]] = []
    # The answer: the best quote's phrase and the same answer in the articles that corroborate it.
    same = {d for d, _ in result.agreement.phrases} if result.agreement is not None else set()
    for n, p in enumerate(result.passages):
        span = (p.phrase or p.highlight) if n == 0 else (p.phrase if p.doc_id in same else None)
        if span:
            given.append((p.doc_id, p.start + span[0], p.start + span[1]))
    anchor = result.question if sets_subject else state.anchor
    # The answers given on this subject; a new subject starts afresh.
    answered = tuple(given) if sets_subject else state.answered + tuple(given)
    after = state.after([p.doc_id for p in result.passages], cfg.topic_decay, cfg.topic_articles, anchor, answered)
    if memo:
        index.remember(_chat_key(index, (*turns, result.question), k, mode, filters), after)
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


def read(index: "Index", question: str, cands: list[Candidate], reader: Reader, avoid: Sequence[tuple[str, int, int]] = ()) -> None:
    """Let the reader mark the answering span of every candidate, touching none of `avoid`."""
    readings = reader(question, cands, index, avoid=avoid) if avoid and accepts_avoid(reader) else reader(question, cands, index)
    for c, r in zip(cands, readings, strict=True):
        # A reader without `avoid` (the rules', or one written before it) may mark an earlier answer: dropped.
        c.span = None if overlaps(r.span, c.doc_id, avoid) else r.span
        c.span_score, c.no_answer = r.score, r.no_answer
        c.log_prob, c.log_prob_null = r.log_prob, r.log_prob_null
        if overlaps(c.phrase, c.doc_id, avoid):
            c.phrase = None  # an earlier answer is no typed phrase of this question (the rules' bonus)


def prepare(
    index: "Index", question: str, cands: list[Candidate], windows: bool, vectors: bool, read_as: str | None = None
) -> list[Candidate]:
    """The candidates' features: the cheap ones always; with `windows`, the reader's windows planned
    (rag.answering.windows: their other sentences join as candidates); with `vectors`, the
    sentence embeddings the rules' scorer needs. `read_as`: what the reader will read instead of
    the question (a follow-up with the anchor's subject): the windows are planned for the question,
    as in training, and the read sentences' cheap and context features describe `read_as`."""
    cfg = index.config
    lexical_features(question, cands, cfg)
    if windows:
        known = {id(c) for c in cands}
        cands = plan_reading(index, cands, cfg)
        described = read_as or question
        lexical_features(described, cands if described != question else [c for c in cands if id(c) not in known], cfg)
        context_features(index, described, [c for c in cands if c.window is not None])
    if vectors:
        # With planned windows only the read sentences are ranked by their features.
        embed_features(index, question, [c for c in cands if c.window is not None] if windows else cands)
    return cands


def planned_windows(index: "Index", question: str) -> list[tuple[str, int, int]]:
    """The windows (doc id, start, end) a model reader reads for `question` asked alone, in reading
    order: what the reader is trained on (rag.reader.data)."""
    found = find_candidates(index, question)
    q = found.question
    if not found.passages:
        return []
    cands = prepare(index, q, gather(index, q, found.passages, question_type(q)), windows=True, vectors=False)
    return list(dict.fromkeys((c.doc_id, *c.window) for c in cands if c.window is not None))


def rank(
    index: "Index", question: str, cands: list[Candidate], scorer: SentenceScorer, reader: Reader, context: str | None = None,
    avoid: Sequence[tuple[str, int, int]] = (),
) -> list[Candidate]:
    """The candidates with features, spans and scores, best first. The mode chooses how candidate
    passages are found; sentences are always ranked by the same scorer, so abstention means the
    same thing in every mode. A reader that reads windows (the model reader) reads the ones
    rag.answering.windows plans, and every sentence in them becomes a candidate. `context`: the
    earlier question a follow-up leans on; `avoid`: text no span may touch (read)."""
    # A follow-up's reader reads it with the question it leaned on appended: „Wie heißt dieser
    # Berater?“ alone does not say which adviser (measured: README, Conversations).
    lean = index.config.context_reader
    asked = f"{question} {subject_of(context) if lean == 'subject' else context}" if context and lean else question
    # With a model reader the features the combiner weighs describe what the reader reads (prepare);
    # the rules' scorer and its abstention keep the question's own overlap.
    cands = prepare(index, question, cands, getattr(reader, "reads_windows", False), getattr(scorer, "needs_vectors", True), asked)
    read(index, asked, cands, reader, avoid)
    if asks_for_source(question):
        # Who a statement comes from is grammar — the reporting clause („…, wie X meldeten“) — which
        # no training question asks for; the reader still judges which sentence answers.
        for c in cands:
            found = source_phrase(c.text)
            span = None if found is None else (c.start + found[0], c.start + found[1])
            if c.no_answer is not None and span is not None and not overlaps(span, c.doc_id, avoid):
                c.span = span
    for c, s in zip(cands, scorer(question, cands), strict=True):
        c.score = float(s)
    return sorted(cands, key=lambda c: -c.score)


def _agreement(
    group: list[tuple[Candidate, str]], passages: list[Passage], best_score: float, kind: str | None, cfg: Config,
    threshold: float | None = None,
) -> Agreement | None:
    """The best answer, the articles that corroborate it, then strong quotes of further articles
    (agreement_of keeps those that contradict it in comparable terms): with a calibrated scorer
    those its `threshold` accepts and at least `contradiction_share` as probable as the best, else
    those within `agreement_margin` of the best in rule units."""
    pairs = [(c.doc_id, p) for c, p in group]
    grouped = {d for d, _ in pairs}
    floor = max(threshold, cfg.contradiction_share * best_score) if threshold is not None else best_score - cfg.agreement_margin
    for p in passages:
        if p.phrase and p.doc_id not in grouped and p.score >= floor:
            pairs.append((p.doc_id, p.answer_text))
            grouped.add(p.doc_id)
    return agreement_of(pairs, kind, cfg.agreement_tolerance)


def _text_of(index: "Index") -> Callable[[str], str]:
    return lambda doc_id: index.documents[doc_id].text
