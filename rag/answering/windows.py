"""What the model reader reads: windows of consecutive sentences around the candidates most likely
to hold the answer, and every sentence of those windows as a candidate.

The choice is made without embedding any sentence (that cost most of an answer's time): a
candidate's passage retrieval score (`prior`), the share of the question's stems it holds
(`lexical`) and whether it holds a phrase of the asked type (`typed`). The best `reader_top`
candidates by that are each read with `reader_context` sentences on either side; neighbouring ones
share a window up to `reader_window_chars`. Measured on the news-qa *train* split against all 1,028
10kGNAD articles (README, The reader): 16 candidates give ≈ 7 windows (≈ 1,050 tokens) that hold
the answer for 99 % of the answerable questions.

The trained reader is trained on exactly these windows (`rag.reader.data`), so its scores of
different windows of one question are comparable.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..config import Config
from .candidates import Candidate

if TYPE_CHECKING:
    from .reading import Documents

__all__ = ["selection_scores", "plan_windows", "plan_reading"]


def selection_scores(cands: Sequence[Candidate], config: Config) -> np.ndarray:
    """How likely each candidate holds the answer, for choosing what to read (not for ranking)."""
    return np.array(
        [c.prior + config.select_lexical_weight * c.lexical + config.select_typed_weight * c.typed for c in cands], dtype=np.float64
    )


def plan_windows(docs: "Documents", cands: Sequence[Candidate], context: int, max_chars: int) -> list[tuple[int, int]]:
    """Per candidate, the window it is read in (document offsets): its sentence with `context`
    sentences before and after it. Candidates of one article whose windows overlap or touch share
    one window while it stays within `max_chars`: it is read once."""
    out: list[tuple[int, int]] = [(0, 0)] * len(cands)
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for pos, c in enumerate(cands):
        by_doc.setdefault(c.doc_id, []).append((_sentence_no(docs, c), pos))
    for doc_id, members in by_doc.items():
        sents = docs.sentences(doc_id)
        group: list[tuple[int, int]] = []
        for i, pos in sorted(members) + [(10**9, -1)]:  # a sentinel closes the last group
            if group and i - group[-1][0] <= 2 * context + 1 and i < 10**9:
                a, b = _around(sents, group[0][0], i, context)
                if b - a <= max_chars:
                    group.append((i, pos))
                    continue
            if group:
                window = _around(sents, group[0][0], group[-1][0], context)
                for _, p in group:
                    out[p] = window
            group = [(i, pos)]
    return out


def plan_reading(docs: "Documents", cands: list[Candidate], config: Config) -> list[Candidate]:
    """The candidates with the windows the reader reads set (`Candidate.window`): the best
    `reader_top` by `selection_scores` and every other sentence inside their windows (the
    neighbours become candidates of their own, with their window's prior; their cheap features are
    the caller's to set). Candidates outside every window keep `window` None and come after the
    read ones."""
    if not cands:
        return cands
    order = np.argsort(-selection_scores(cands, config), kind="stable")[: config.reader_top]
    chosen = [cands[i] for i in order]
    windows = plan_windows(docs, chosen, config.reader_context, config.reader_window_chars)
    by_start = {(c.doc_id, c.start): c for c in cands}
    read: dict[tuple[str, int], Candidate] = {}
    for c, (a, b) in zip(chosen, windows):
        text = docs.documents[c.doc_id].text
        for s, e in docs.sentences(c.doc_id):
            if s < a or e > b:
                continue
            known = read.get((c.doc_id, s)) or by_start.get((c.doc_id, s))
            if known is None:
                known = replace(c, start=s, end=e, text=text[s:e], lexical=0.0, phrase=None, window=None)
            if known.window is None or (known.window[1] - known.window[0]) < (b - a):
                known.window = (a, b)  # a sentence in two windows is read in the wider one
            read[(c.doc_id, s)] = known
    first = list(read.values())
    return first + [c for c in cands if (c.doc_id, c.start) not in read]


def _sentence_no(docs: "Documents", c: Candidate) -> int:
    return next(j for j, (s, _) in enumerate(docs.sentences(c.doc_id)) if s == c.start)


def _around(sents: list[tuple[int, int]], lo: int, hi: int, context: int) -> tuple[int, int]:
    """Sentences lo..hi with `context` sentences on each side (document offsets)."""
    return sents[max(0, lo - context)][0], sents[min(len(sents) - 1, hi + context)][1]
