"""Follow-up questions: what the earlier questions of a chat add to the newest one.

A chat's history is its earlier questions, oldest first. Where the chat stands after a turn is a
`ChatState`: the articles its answers quoted (`topic_after`: the first `Config.topic_articles`
weigh 1, 1/2; articles of earlier turns fade by `Config.topic_decay` a turn), the question that set
its subject (the *anchor*: the last question read on its own — the first, or one that named its own
topic) and the spans of the answers given on that subject, which the chat's reading of a follow-up
never gives again. An abstention changes none of them. The answer stage remembers the state per index version
(rag.answering.pipeline.chat_state), so in a chat nothing is answered twice.

Every question in a chat is read on its own; one that does not name its own topic
(`names_own_topic`) is read in the chat's light as well (rag.answering.pipeline.choose_reading: the
chat's reading answers when the trained reader accepts it, else the question alone only when the
reader is quite sure of it, else the answer abstains). The chat's reading ranks by weighted
reciprocal rank fusion

- the question alone (its usual lists, full weight);
- the question with the anchor appended (`Config.context_weight`): the missing subject or event;
- the chunks of the chat's articles ranked by their similarity to the question
  (`Config.topic_weight` × the article's weight): the prior on the last answers' articles;

keeps to the chat's articles (`Config.chat_reads_topic`), and the reader reads the question with the
anchor's subject appended (`subject_of`: „Wie lange dauerte der Gipfel?“ → „Gipfel“; the whole
anchor would ask the reader the earlier question again), never giving an earlier answer of the
subject again.

A question that names its own topic („Wie hoch war Österreichs Arbeitslosenquote im April?“ after a
chat about a summit) is read on its own only: the question alone matches chunks elsewhere clearly
better than anything in the chat's articles. The weights and thresholds were measured with
`rag eval` on conversation files and on self-contained questions asked after unrelated chats
(README, Conversations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import QuestionError
from .retrieval import Candidates, Filters, clean_question, fuse, merge_spans, search_lists

if TYPE_CHECKING:
    from .store import Index

__all__ = [
    "ChatState", "Context", "clean_history", "contextual_candidates", "contextual_ranking", "names_own_topic", "subject_of",
    "topic_after",
]


@dataclass(frozen=True)
class Context:
    """What a follow-up was answered in the light of."""

    question: str  # the earlier question it leaned on (the one that set the chat's subject)
    articles: dict[str, float]  # the articles the chat is about → prior weight (1 for the last answer's first)


@dataclass(frozen=True)
class ChatState:
    """Where a chat stands after a turn: what the next question may lean on."""

    topic: dict[str, float]  # the articles the chat is about → weight (topic_after)
    anchor: str | None = None  # the last self-contained question of this topic: what „Bezogen auf“ names
    # (doc, start, end) of the answers given on this subject: a follow-up asks for something new.
    answered: tuple[tuple[str, int, int], ...] = ()

    def after(self, quoted: Sequence[str], decay: float, articles: int, anchor: str | None,
              answered: tuple[tuple[str, int, int], ...]) -> "ChatState":
        """The state after a turn whose answer quoted `quoted` (doc ids, best first; [] when it
        abstained: the chat keeps its topic, subject and answers)."""
        if not quoted:
            return self
        return ChatState(topic_after(quoted, self.topic, decay, articles), anchor, answered)


def subject_of(question: str) -> str:
    """What a question is about, as the reader is given it beside a follow-up: its capitalised words
    after the first (German nouns and names) and its numbers — not its question word, which would
    ask the reader the earlier question again („Wie lange dauerte der Gipfel?“ → „Gipfel“). The
    question itself when it has no such word."""
    words = [w.strip(SUBJECT_STRIP) for w in question.split()[1:]]
    kept = [w for w in words if w and (w[0].isupper() or w[0].isdigit()) and w not in SUBJECT_STOP]
    return " ".join(kept) if kept else question


# Capitalised words that name nothing: sentence openers and pronouns after punctuation, forms of address.
SUBJECT_STOP = {"Sie", "Ihr", "Ihre", "Ihnen", "Und", "Der", "Die", "Das", "Wie", "Was", "Wer", "Wo", "Wann", "Warum"}
SUBJECT_STRIP = "„“\"'‚‘»«()[]?!.,:;"


def clean_history(history: Sequence[str] | None, turns: int, max_chars: int) -> tuple[str, ...]:
    """The last `turns` earlier questions, cleaned like questions; QuestionError for anything but
    a list of strings. Empty entries are skipped (a chat may hold an unsent blank)."""
    if history is None:
        return ()
    if isinstance(history, str) or not isinstance(history, (list, tuple)):
        raise QuestionError("Der Verlauf muss eine Liste früherer Fragen sein.")
    out = []
    for h in history:
        if not isinstance(h, str):
            raise QuestionError("Der Verlauf muss eine Liste früherer Fragen (Zeichenketten) sein.")
        if h.strip():
            out.append(clean_question(h, max_chars))
    return tuple(out[-turns:]) if turns > 0 else ()


def topic_after(answered: Sequence[str], inherited: dict[str, float], decay: float, articles: int) -> dict[str, float]:
    """The articles a chat is about after a turn whose answer quoted `answered` (doc ids, best
    first; [] when it abstained): its first `articles` articles weigh 1, 1/2, …; the articles the
    chat was about before stay with their weight × `decay` (where not quoted again)."""
    out = {doc: w * decay for doc, w in inherited.items() if w * decay >= 0.05}
    for rank, doc in enumerate(list(dict.fromkeys(answered))[:articles]):
        out[doc] = max(out.get(doc, 0.0), 1.0 / (rank + 1))
    return out


def contextual_ranking(
    index: "Index", question: str, previous: str, topic: dict[str, float], mode: str | None = None, allowed: set[str] | None = None,
    within_topic: bool = False,
) -> tuple[list[tuple[int, float]], Context | None]:
    """Fused chunk ranking of `question` after the question `previous`, whose answer left the chat
    about the `topic` articles; and the context it used (None: ranked as if asked alone). With
    `within_topic` only the chat's articles' chunks are kept (the question is read alone as well)."""
    cfg = index.config
    alone = search_lists(index, question, mode, cfg.candidates, allowed)
    if allowed is not None:
        topic = {d: w for d, w in topic.items() if d in allowed}
    doc_of = {cid: doc for doc in topic for cid in index.chunks_of(doc)}
    topic_chunks = list(doc_of)
    if not topic_chunks:
        return fuse(list(alone.values()), cfg.rrf_k)[: cfg.candidates], None
    sims = index.vectors(topic_chunks) @ index.query_vector(question)
    if names_own_topic(index, question, alone, topic, float(sims.max())):
        return fuse(list(alone.values()), cfg.rrf_k)[: cfg.candidates], None
    lists = list(alone.values())
    expanded = f"{question} {previous}"
    lists += [(w * cfg.context_weight, hits) for w, hits in search_lists(index, expanded, mode, cfg.candidates, allowed).values()]
    order = np.argsort(-sims, kind="stable")
    # One list per topic article, so an article's weight scales its chunks' votes.
    for doc, w in topic.items():
        hits = [(topic_chunks[i], float(sims[i])) for i in order if doc_of[topic_chunks[i]] == doc]
        lists.append((cfg.topic_weight * w, hits))
    fused = fuse(lists, cfg.rrf_k)
    if within_topic:
        # The chat's reading is the question about the chat's articles; the reading of the question
        # alone covers every other article (rag.answering.pipeline).
        fused = [hit for hit in fused if hit[0] in doc_of]
    return fused[: cfg.candidates], Context(question=previous, articles=dict(topic))


def names_own_topic(
    index: "Index", question: str, alone: dict[str, tuple[float, list[tuple[int, float]]]], topic: dict[str, float], topic_sim: float
) -> bool:
    """Whether the question alone finds chunks elsewhere that match it clearly better than anything
    in the chat's articles: by more than `Config.topic_shift` in cosine similarity, or by more than
    `Config.topic_shift_bm25` in BM25 score (a name or term the chat never touched). Measured on the
    conversation files and on self-contained questions asked after unrelated chats (README,
    Conversations): follow-ups stay below both, questions with their own topic mostly exceed one."""
    cfg = index.config
    heads = [cid for _, hits in alone.values() for cid, _ in hits[:10]]
    best = float((index.vectors(heads) @ index.query_vector(question)).max()) if heads else 0.0
    if best - topic_sim > cfg.topic_shift:
        return True
    _, bm25 = alone.get("bm25", (0.0, []))
    if not bm25:
        return False
    doc_of = index.chunks.doc_ids(cid for cid, _ in bm25)
    in_topic = max((s for cid, s in bm25 if doc_of[cid] in topic), default=0.0)
    return bm25[0][1] - in_topic > cfg.topic_shift_bm25


def contextual_candidates(
    index: "Index", question: str, previous: str, topic: dict[str, float], mode: str | None = None, filters: Filters | None = None,
    within_topic: bool = False,
) -> tuple[Candidates, Context | None]:
    """Like rag.retrieval.find_candidates, for a question asked in a chat whose subject `previous`
    set (its anchor) and which is about the `topic` articles (topic_after); the context is None
    when the question names its own topic. `within_topic`: see contextual_ranking."""
    q = clean_question(question, index.config.max_question_chars)
    allowed = filters.allowed(index.documents) if filters is not None else None
    ranked, context = contextual_ranking(index, q, previous, topic, mode, allowed, within_topic)
    return Candidates(q, merge_spans(index, ranked)), context
