"""The trained reader at answer time, and the scorer that combines it with the heuristic ranking.

`ModelReader` (the trained reader, or a model the user brings) reads the best `reader_top`
candidates (by the heuristic score) each in its window
(the sentence with its neighbours, as in training) and marks the span the network finds inside
the sentence, with its margin over "no answer". Candidates it does not read keep the heuristic
typed phrase. `CombinedScorer` ranks by heuristic score + `reader_weight` · margin; abstention uses
the best margin (`rag.answering.evidence`).

`Config.reader` names the model: "trained" (the weights shipped in `rag/reader/weights/`) or the
path of a local Hugging Face extractive-QA or CrossEncoder folder (`rag.reader.external`).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import Config
from .candidates import Candidate
from .phrases import complete_value
from .reading import Documents, HeuristicReader, Reading
from .scoring import HeuristicScorer

__all__ = ["ModelReader", "CombinedScorer", "load_window_reader", "plan_windows"]


@functools.lru_cache(maxsize=4)
def load_window_reader(spec: str, backend: str = "torch"):
    """The network behind `Config.reader`: the shipped weights for "trained", else a user's folder."""
    from ..reader.runtime import NeuralReader
    from ..reader.train import WEIGHTS_DIR

    if spec == "trained":
        return NeuralReader(WEIGHTS_DIR, backend=backend)
    from ..reader.external import load_external_reader

    return load_external_reader(Path(spec).expanduser())


class ModelReader:
    def __init__(self, config: Config, model=None):
        self.config = config
        self.model = model if model is not None else load_window_reader(config.reader, config.reader_backend)
        self.heuristic = HeuristicReader(config)
        self.prescore = HeuristicScorer(config)

    def __call__(self, question: str, candidates: Sequence[Candidate], docs: Documents) -> list[Reading]:
        readings = self.heuristic(question, candidates, docs)
        if not candidates:
            return readings
        # Which sentences to read: the heuristic ranking with its typed phrases (features are set).
        for c, r in zip(candidates, readings):
            c.span = r.span
        order = [int(i) for i in np.argsort(-self.prescore(question, candidates), kind="stable")[: self.config.reader_top]]
        chosen = [candidates[i] for i in order]
        spans = plan_windows(docs, chosen, self.config.reader_context, self.config.reader_window_chars)
        windows = [docs.documents[c.doc_id].text[a:b] for c, (a, b) in zip(chosen, spans)]
        focus = [(c.start - a, c.end - a) for c, (a, _) in zip(chosen, spans)]
        for i, (fs, fe), r in zip(order, focus, self.model.read(question, windows, focus=focus), strict=True):
            c = candidates[i]
            span = readings[i].span
            if r.span is not None and fs <= r.span[0] < r.span[1] <= fe:
                a, b = complete_value(c.text, (r.span[0] - fs, r.span[1] - fs))
                span = (c.start + a, c.start + b)
            readings[i] = Reading(score=r.margin, span=span, no_answer=-r.margin)
        return readings


def plan_windows(docs: Documents, cands: Sequence[Candidate], context: int, max_chars: int) -> list[tuple[int, int]]:
    """Per candidate, the window it is read in (document offsets): its sentence with `context`
    sentences before and after it, as in training. Candidates of one article whose windows
    overlap or touch share one window while it stays within `max_chars`: it is read once."""
    out: list[tuple[int, int]] = [(0, 0)] * len(cands)
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for pos, c in enumerate(cands):
        sents = docs.sentences(c.doc_id)
        by_doc.setdefault(c.doc_id, []).append((next(j for j, (s, _) in enumerate(sents) if s == c.start), pos))
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


def _around(sents: list[tuple[int, int]], lo: int, hi: int, context: int) -> tuple[int, int]:
    """Sentences lo..hi with `context` sentences on each side (document offsets)."""
    return sents[max(0, lo - context)][0], sents[min(len(sents) - 1, hi + context)][1]


class CombinedScorer:
    """Heuristic score + `reader_weight` · the reader's margin. Sentences the reader did not read
    count with the lowest margin it gave, so they stay below the read ones they trail anyway."""

    def __init__(self, config: Config):
        self.config = config
        self.heuristic = HeuristicScorer(config)

    def __call__(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        base = self.heuristic(question, candidates)
        margins = [c.span_score if c.no_answer is not None else math.nan for c in candidates]
        read = [m for m in margins if not math.isnan(m)]
        floor = min(read) if read else 0.0
        return base + self.config.reader_weight * np.array([floor if math.isnan(m) else m for m in margins])
