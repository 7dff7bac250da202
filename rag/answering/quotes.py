"""Quotes: verbatim passages cut at sentence boundaries around an answering sentence, with the
sentence highlighted and the reader's phrase marked inside it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from ..retrieval import Passage, diversify, make_passage
from .candidates import Candidate

if TYPE_CHECKING:
    from ..store import Index

__all__ = ["quote_span", "quote", "assemble_quotes"]


def quote_span(
    sentences: Sequence[tuple[int, int]], start: int, end: int, max_chars: int, include: Iterable[tuple[int, int]] = ()
) -> tuple[int, int]:
    """The answering sentence (start, end) of a document with these `sentences`, widened first to
    the `include` sentences (strong runners-up of the same article, in order) that fit, then by
    whole neighbouring sentences (before first, then after) while the quote stays within `max_chars`."""
    for a, b in include:
        if max(end, b) - min(start, a) <= max_chars:
            start, end = min(start, a), max(end, b)
    lo = next(j for j, (s, _) in enumerate(sentences) if s == start)
    hi = next(j for j, (_, e) in enumerate(sentences) if e == end)
    grew = True
    while grew:
        grew = False
        if lo > 0 and end - sentences[lo - 1][0] <= max_chars:
            lo -= 1
            start = sentences[lo][0]
            grew = True
        if hi + 1 < len(sentences) and sentences[hi + 1][1] - start <= max_chars:
            hi += 1
            end = sentences[hi][1]
            grew = True
    return start, end


def quote(index: "Index", c: Candidate, ranked: Sequence[Candidate]) -> Passage:
    """The quote around candidate `c`, covering same-article sentences that score within
    `cover_margin` of it; its score is the candidate's."""
    cfg = index.config
    runners_up = [(o.start, o.end) for o in ranked if o.doc_id == c.doc_id and o is not c and o.score >= c.score - cfg.cover_margin]
    qs, qe = quote_span(index.sentences(c.doc_id), c.start, c.end, cfg.max_quote_chars, runners_up)
    p = make_passage(index, c.doc_id, qs, qe, c.score, c.chunk_ids)
    p.highlight = (c.start - qs, c.end - qs)
    # The whole sentence stays highlighted (measured: narrowing alone misses more often); the
    # reader's phrase inside it is marked on top.
    if c.span is not None and cfg.typed_highlight:
        p.phrase = (c.span[0] - qs, c.span[1] - qs)
    return p


def assemble_quotes(
    index: "Index", ordered: Sequence[Candidate], fixed: Sequence[Candidate], ranked: Sequence[Candidate], k: int
) -> list[Passage]:
    """Up to k quotes, one per answering sentence of `ordered` whose quote does not overlap an
    earlier one of its article. The quotes of `fixed` candidates (the best answer and the articles
    that corroborate it) come first as they are; the others are diversified across articles."""
    quotes: list[Passage] = []
    n_fixed = 0
    for c in ordered:
        p = quote(index, c, ranked)
        if any(q.doc_id == p.doc_id and p.start < q.end and p.end > q.start for q in quotes):
            continue
        quotes.append(p)
        n_fixed += c in fixed
    # Sentence scores lie close together, so a further quote from an already quoted article pays
    # a fixed amount rather than a share of its score.
    return diversify(quotes[n_fixed:], k, penalty=1.0, subtract=index.config.answer_diversity, chosen=quotes[:n_fixed])
