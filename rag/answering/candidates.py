"""Which sentences are considered for an answer, and what is measured about each of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..text import stems

if TYPE_CHECKING:
    from ..retrieval import Passage
    from ..store import Index

__all__ = ["Candidate", "sentences_of", "embed_features"]


@dataclass(eq=False)  # candidates are told apart by identity
class Candidate:
    """A sentence that might answer the question. Offsets are into the document text."""

    doc_id: str
    start: int
    end: int
    text: str  # == document.text[start:end]
    prior: float  # retrieval score of its passage, scaled to [0, 1]
    chunk_ids: tuple[int, ...] = ()
    # Features (embed_features), the reader's opinion (Reading) and the scorer's score.
    dense: float = 0.0  # similarity of the question to the sentence in context
    lexical: float = 0.0  # share of the question's stems in the sentence
    vec: np.ndarray | None = field(default=None, repr=False)  # embedding of the sentence in context
    span: tuple[int, int] | None = None  # the answering phrase (document offsets, inside the sentence)
    span_score: float = 0.0  # the reader's confidence in `span`
    no_answer: float | None = None  # the reader's confidence that the sentence does not answer
    topic: float = 0.0  # weight of its article in the chat's topic (rag.conversation.topic_after), 0 outside a chat
    score: float = 0.0
    heuristic: float = 0.0  # the rules' score (HeuristicScorer), also when another scorer ranks

    @property
    def typed(self) -> bool:
        """Whether the reader marked an answering phrase in it."""
        return self.span is not None


def sentences_of(
    index: "Index",
    passages: Iterable["Passage"],
    top: float,
    seen: set[tuple[str, int]],
    keep: Callable[[str], bool] | None = None,
    limit: int | None = None,
) -> list[Candidate]:
    """The sentences of `passages` not in `seen` (and passing `keep(text)`, at most `limit`), their
    prior the passage's score over `top`. Adds what it returns to `seen`."""
    cands: list[Candidate] = []
    top = top or 1.0
    for p in passages:
        text = index.documents[p.doc_id].text
        for s, e in index.sentences(p.doc_id):
            if e <= p.start or s >= p.end or (p.doc_id, s) in seen:
                continue
            if keep is not None and not keep(text[s:e]):
                continue
            seen.add((p.doc_id, s))
            cands.append(Candidate(p.doc_id, s, e, text[s:e], prior=p.score / top, chunk_ids=p.chunk_ids))
            if limit is not None and len(cands) >= limit:
                return cands
    return cands


def embed_features(index: "Index", question: str, cands: Sequence[Candidate]) -> None:
    """Set `dense`, `vec` and `lexical` of every candidate.

    A sentence is embedded with the ones before it (`Config.sentence_context`): "Sie dauerten zwei
    Stunden" needs its subject."""
    if not cands:
        return
    qv = index.query_vector(question)
    sv = index.sentence_vectors([_with_context(index, c, index.config.sentence_context) for c in cands])
    q_stems = stems(question)
    for c, v, d in zip(cands, sv, sv @ qv):
        c.vec = v
        c.dense = float(d)
        c.lexical = len(stems(c.text) & q_stems) / max(1, len(q_stems))


def _with_context(index: "Index", c: Candidate, before: int) -> str:
    sents = index.sentences(c.doc_id)
    i = next(j for j, (s, _) in enumerate(sents) if s == c.start)
    start = sents[max(0, i - before)][0]
    return index.documents[c.doc_id].text[start : c.end]
