"""Which sentences are considered for an answer, and what is measured about each of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..text import stems
from .phrases import find_phrase, question_type

if TYPE_CHECKING:
    from ..config import Config
    from ..retrieval import Passage
    from ..store import Index

__all__ = ["Candidate", "sentences_of", "lexical_features", "context_features", "embed_features"]


@dataclass(eq=False)  # candidates are told apart by identity
class Candidate:
    """A sentence that might answer the question. Offsets are into the document text."""

    doc_id: str
    start: int
    end: int
    text: str  # == document.text[start:end]
    prior: float  # retrieval score of its passage, scaled to [0, 1]
    chunk_ids: tuple[int, ...] = ()
    doc_rank: int = 0  # rank of its article among the retrieved articles (0: the first)
    # Cheap features (lexical_features): no model involved.
    lexical: float = 0.0  # share of the question's stems in the sentence
    phrase: tuple[int, int] | None = None  # a phrase of the asked type (rag.answering.phrases; document offsets)
    # Context features (context_features): cheap, no model.
    bm25: float = 0.0  # the best BM25 score of its passage's chunks for the question, over the best chunk's
    chunk_dense: float = 0.0  # the best e5 similarity of its passage's chunks to the question (stored vectors)
    window_lexical: float = 0.0  # share of the question's stems in the window it is read in
    doc_lexical: float = 0.0  # share of the question's stems anywhere in its article
    # Embedding features (embed_features), for the rules' scorer only.
    dense: float = 0.0  # similarity of the question to the sentence in context
    vec: np.ndarray | None = field(default=None, repr=False)  # embedding of the sentence in context
    # What the model reader reads it in (rag.answering.windows; document offsets), None: not read.
    window: tuple[int, int] | None = None
    # The reader's opinion (Reading) and the scorer's score.
    span: tuple[int, int] | None = None  # the answering phrase (document offsets, inside the sentence)
    span_score: float = 0.0  # the reader's confidence in `span`
    no_answer: float | None = None  # the reader's confidence that the sentence does not answer
    log_prob: float | None = None  # the model reader's log-probability of `span` among all it read (shared-norm)
    log_prob_null: float | None = None  # … and of "none of it answers" (the same for every candidate of a question)
    topic: float = 0.0  # weight of its article in the chat's topic (rag.conversation.topic_after), 0 outside a chat
    score: float = 0.0  # the scorer's: a probability (the trained reader's) or the rules' score

    @property
    def typed(self) -> bool:
        """Whether it holds a phrase of the asked type."""
        return self.phrase is not None


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
    doc_rank: dict[str, int] = {}
    for p in passages:
        doc_rank.setdefault(p.doc_id, len(doc_rank))
        text = index.documents[p.doc_id].text
        for s, e in index.sentences(p.doc_id):
            if e <= p.start or s >= p.end or (p.doc_id, s) in seen:
                continue
            if keep is not None and not keep(text[s:e]):
                continue
            seen.add((p.doc_id, s))
            cands.append(Candidate(p.doc_id, s, e, text[s:e], prior=p.score / top, chunk_ids=p.chunk_ids, doc_rank=doc_rank[p.doc_id]))
            if limit is not None and len(cands) >= limit:
                return cands
    return cands


def lexical_features(question: str, cands: Sequence[Candidate], config: "Config") -> None:
    """Set `lexical` (share of the question's stems in the sentence) and `phrase` (a phrase of the
    type the question asks for) of every candidate: cheap, no model."""
    q_stems = stems(question)
    kind = question_type(question)
    for c in cands:
        c.lexical = len(stems(c.text) & q_stems) / max(1, len(q_stems))
        found = find_phrase(c.text, kind, question, config)
        c.phrase = None if found is None else (c.start + found[0], c.start + found[1])


def context_features(index: "Index", question: str, cands: Sequence[Candidate]) -> None:
    """Set `bm25`, `chunk_dense`, `window_lexical` and `doc_lexical` of every candidate (the window
    where one is planned, else the sentence): what retrieval and the surrounding text say about it,
    from stored vectors and the BM25 index, without embedding anything."""
    if not cands:
        return
    cfg = index.config
    bm25 = dict(index.bm25_search(question, cfg.candidates))
    top = max(bm25.values(), default=0.0) or 1.0
    chunk_ids = sorted({cid for c in cands for cid in c.chunk_ids})
    dense = dict(zip(chunk_ids, (index.vectors(chunk_ids) @ index.query_vector(question)).tolist())) if chunk_ids else {}
    q_stems = stems(question)
    n = max(1, len(q_stems))
    doc_stems: dict[str, set[str]] = {}
    window_stems: dict[tuple[str, int, int], set[str]] = {}  # the sentences of one window share it
    for c in cands:
        c.bm25 = max((bm25.get(cid, 0.0) for cid in c.chunk_ids), default=0.0) / top
        c.chunk_dense = max((dense[cid] for cid in c.chunk_ids), default=0.0)
        text = index.documents[c.doc_id].text
        if c.doc_id not in doc_stems:
            doc_stems[c.doc_id] = stems(text)
        a, b = c.window or (c.start, c.end)
        if (c.doc_id, a, b) not in window_stems:
            window_stems[(c.doc_id, a, b)] = stems(text[a:b])
        c.window_lexical = len(window_stems[(c.doc_id, a, b)] & q_stems) / n
        c.doc_lexical = len(doc_stems[c.doc_id] & q_stems) / n


def embed_features(index: "Index", question: str, cands: Sequence[Candidate]) -> None:
    """Set `dense` and `vec` of every candidate (for the rules' scorer).

    A sentence is embedded with the ones before it (`Config.sentence_context`): "Sie dauerten zwei
    Stunden" needs its subject."""
    if not cands:
        return
    qv = index.query_vector(question)
    sv = index.sentence_vectors([_with_context(index, c, index.config.sentence_context) for c in cands])
    for c, v, d in zip(cands, sv, sv @ qv):
        c.vec = v
        c.dense = float(d)


def _with_context(index: "Index", c: Candidate, before: int) -> str:
    sents = index.sentences(c.doc_id)
    i = next(j for j, (s, _) in enumerate(sents) if s == c.start)
    start = sents[max(0, i - before)][0]
    return index.documents[c.doc_id].text[start : c.end]
