"""Hybrid ranking: dense (FAISS) + German BM25, fused, merged per article, diversified → Passage."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Collection, Iterable, Mapping

from .errors import QuestionError

if TYPE_CHECKING:
    from .corpus import Document
    from .store import Index

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "bm25")


@dataclass
class Passage:
    text: str  # verbatim: document.text[start:end]
    doc_id: str
    title: str
    date: str | None
    source: str
    start: int
    end: int
    score: float
    highlight: tuple[int, int] | None = None  # the answering sentence: (start, end) inside `text`
    phrase: tuple[int, int] | None = None  # the answering phrase inside that sentence, when one is typed
    url: str | None = None
    chunk_ids: tuple[int, ...] = field(default=(), repr=False)

    @property
    def highlighted(self) -> str:
        """The highlighted sentence itself (empty without a highlight)."""
        return self.text[self.highlight[0] : self.highlight[1]] if self.highlight else ""

    @property
    def answer_text(self) -> str:
        """The answering phrase when one was found, else the highlighted sentence."""
        return self.text[self.phrase[0] : self.phrase[1]] if self.phrase else self.highlighted

    def to_dict(self) -> dict:
        d = asdict(self)
        d["chunk_ids"] = list(self.chunk_ids)
        d["highlight"] = list(self.highlight) if self.highlight else None
        d["phrase"] = list(self.phrase) if self.phrase else None
        d["highlighted"] = self.highlighted
        d["answer_text"] = self.answer_text
        return d


def clean_question(question: str, max_chars: int) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("Die Frage ist leer.")
    # Control characters carry no meaning for search and can confuse tokenisers.
    q = "".join(ch if ch.isprintable() else " " for ch in question)
    q = " ".join(q.split())
    if not q:
        raise QuestionError("Die Frage enthält keinen lesbaren Text.")
    if len(q) > max_chars:
        log.warning("Frage auf %d Zeichen gekürzt (war %d).", max_chars, len(q))
        q = q[:max_chars]
    return q


def check_mode(mode: str | None, default: str) -> str:
    """The search mode to use (`default` for None or ""); QuestionError for an unknown one."""
    mode = mode or default
    if mode not in MODES:
        raise QuestionError(f"Unbekanntes Suchverfahren: {mode} (erlaubt: {', '.join(MODES)})")
    return mode


@dataclass(frozen=True)
class Filters:
    """Which articles may answer: these ids and/or a date range (ISO-like prefixes, inclusive)."""

    doc_ids: Collection[str] | None = None
    date_from: str | None = None
    date_to: str | None = None

    def allowed(self, documents: Mapping[str, "Document"]) -> set[str] | None:
        """The ids of `documents` that pass, or None when nothing is filtered."""
        if self.doc_ids is None and self.date_from is None and self.date_to is None:
            return None
        allowed = set(documents) if self.doc_ids is None else set(self.doc_ids) & set(documents)
        if self.date_from or self.date_to:
            allowed = {d for d in allowed if self._in_range(documents[d].date)}
        return allowed

    def _in_range(self, date: str | None) -> bool:
        # ISO-like strings compare correctly by prefix; an undated article is excluded by a date filter.
        if not date:
            return False
        lo, hi = self.date_from, self.date_to
        return (not lo or date[: len(lo)] >= lo) and (not hi or date[: len(hi)] <= hi)


def search_lists(
    index: "Index", question: str, mode: str | None = None, depth: int | None = None, allowed: set[str] | None = None
) -> dict[str, tuple[float, list[tuple[int, float]]]]:
    """Retriever name ("dense", "bm25") → (fusion weight, [(chunk id, score), …] best first) for
    each retriever the mode uses, `depth` deep, only chunks of `allowed` articles when given."""
    cfg = index.config
    mode = check_mode(mode, cfg.retriever)
    depth = depth or cfg.candidates
    # With a filter, look further down the lists so that enough allowed chunks remain.
    if allowed is not None:
        depth = min(len(index.chunks), depth * 8)
    lists: dict[str, tuple[float, list[tuple[int, float]]]] = {}
    if mode in ("hybrid", "dense"):
        lists["dense"] = (cfg.dense_weight, index.dense_search(question, depth))
    if mode in ("hybrid", "bm25"):
        lists["bm25"] = (cfg.bm25_weight, index.bm25_search(question, depth))
    if allowed is not None:
        doc_of = index.chunks.doc_ids({c for _, hits in lists.values() for c, _ in hits})
        lists = {name: (w, [(c, s) for c, s in hits if doc_of[c] in allowed]) for name, (w, hits) in lists.items()}
    return lists


def fuse(lists: list[tuple[float, list[tuple[int, float]]]], rrf_k: int) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion, best first: robust to the very different score scales of
    cosine and BM25. A single list is returned as it is."""
    if len(lists) == 1:
        return list(lists[0][1])
    fused: dict[int, float] = {}
    for weight, hits in lists:
        for rank, (cid, _) in enumerate(hits):
            fused[cid] = fused.get(cid, 0.0) + weight / (rrf_k + rank + 1)
    return sorted(fused.items(), key=lambda x: -x[1])


def rank_chunks(
    index: "Index",
    question: str,
    mode: str | None = None,
    n: int | None = None,
    allowed: set[str] | None = None,
) -> list[tuple[int, float]]:
    """Chunk ids with fused scores, best first."""
    n = n or index.config.candidates
    return fuse(list(search_lists(index, question, mode, n, allowed).values()), index.config.rrf_k)[:n]


def merge_spans(index: "Index", ranked: list[tuple[int, float]], gap: int = 1, max_len: int | None = None) -> list[Passage]:
    """Overlapping or adjacent chunks of one article become one passage (best score kept),
    up to `max_len` characters so a passage stays quotable."""
    max_len = max_len or 2 * index.config.chunk_size
    spans = index.chunks.spans(cid for cid, _ in ranked)  # one lookup for all of them
    groups: list[dict] = []
    by_doc: dict[str, list[dict]] = {}
    for cid, score in ranked:
        doc_id, c_start, c_end = spans[cid]
        for g in by_doc.get(doc_id, ()):
            start, end = min(g["start"], c_start), max(g["end"], c_end)
            if c_start <= g["end"] + gap and c_end >= g["start"] - gap and end - start <= max_len:
                g["start"], g["end"] = start, end
                g["ids"].append(cid)
                break
        else:
            g = {"doc_id": doc_id, "start": c_start, "end": c_end, "score": score, "ids": [cid]}
            groups.append(g)
            by_doc.setdefault(doc_id, []).append(g)
    return [make_passage(index, g["doc_id"], g["start"], g["end"], g["score"], tuple(g["ids"])) for g in groups]


def make_passage(index: "Index", doc_id: str, start: int, end: int, score: float, chunk_ids=()) -> Passage:
    doc = index.documents[doc_id]
    return Passage(
        text=doc.text[start:end],
        doc_id=doc_id,
        title=doc.title,
        date=doc.date,
        source=doc.source,
        start=start,
        end=end,
        score=score,
        url=doc.url,
        chunk_ids=tuple(chunk_ids),
    )


def diversify(
    passages: list[Passage], k: int, penalty: float = 0.5, subtract: float = 0.0, chosen: Iterable[Passage] = ()
) -> list[Passage]:
    """Greedy pick; each further passage from an already chosen article has its score scaled down
    (× penalty, − subtract per passage already chosen from it), so one long article does not crowd
    out the others that also answer. `chosen` passages come first, as they are."""
    pool = list(passages)
    chosen = list(chosen)[:k]
    seen: dict[str, int] = {}
    for p in chosen:
        seen[p.doc_id] = seen.get(p.doc_id, 0) + 1
    while pool and len(chosen) < k:
        best = max(pool, key=lambda p: p.score * penalty ** seen.get(p.doc_id, 0) - subtract * seen.get(p.doc_id, 0))
        pool.remove(best)
        chosen.append(best)
        seen[best.doc_id] = seen.get(best.doc_id, 0) + 1
    return chosen


@dataclass
class Candidates:
    """What retrieval found for a question: the cleaned question and the merged passages, best
    first (not yet diversified: the answer stage ranks their sentences itself)."""

    question: str
    passages: list[Passage]


def find_candidates(index: "Index", question: str, mode: str | None = None, filters: Filters | None = None) -> Candidates:
    """Clean the question, rank the allowed chunks (`mode`: hybrid, dense or bm25; default from the
    config) and merge them into passages."""
    q = clean_question(question, index.config.max_question_chars)
    allowed = filters.allowed(index.documents) if filters is not None else None
    return Candidates(q, merge_spans(index, rank_chunks(index, q, mode=mode, allowed=allowed)))


def retrieve(index: "Index", question: str, k: int = 5, mode: str | None = None, filters: Filters | None = None) -> list[Passage]:
    """The k best passages for a question (verbatim chunk spans, merged per article, diversified)."""
    if k < 1:
        raise QuestionError("k muss mindestens 1 sein.")
    found = find_candidates(index, question, mode, filters)
    return diversify(found.passages, k, penalty=index.config.diversity_penalty)
