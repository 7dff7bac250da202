"""Readers: where in a candidate sentence the answer is (the phrase to mark), and how sure.

A reader is any callable ``reader(question, candidates, docs) -> list[Reading]``, one Reading
per candidate, in order; `docs` gives the articles' texts and sentences (the `Index` is one).
Readers are chosen by name
(`Config.reader`) from `READERS`.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from ..config import Config
from .candidates import Candidate
from .phrases import find_phrase, question_type
from .registry import Factory, create

if TYPE_CHECKING:
    from ..corpus import Document

__all__ = ["Reading", "Reader", "Documents", "HeuristicReader", "READERS", "make_reader", "overlaps", "accepts_avoid"]


@dataclass(frozen=True)
class Reading:
    """A reader's opinion of one candidate sentence."""

    score: float  # confidence in `span` (0.0: no opinion)
    span: tuple[int, int] | None  # the answering phrase in document offsets, inside the sentence
    no_answer: float | None = None  # confidence that the sentence does not answer (None: no opinion)
    log_prob: float | None = None  # a shared-norm reader: log P(span) among everything read for the question
    log_prob_null: float | None = None  # … and log P(nothing read answers)


class Documents(Protocol):
    """What a reader may look at beyond the candidates: the articles and their sentences."""

    documents: Mapping[str, "Document"]

    def sentences(self, doc_id: str) -> list[tuple[int, int]]: ...


class Reader(Protocol):
    """`reads_windows` (optional, default False): the reader reads the windows the answer stage plans
    (`Candidate.window`, rag.answering.windows) rather than every candidate. `avoid`: (doc id, start,
    end) of text no span may touch — a chat's earlier answers, since a follow-up asks for something new."""

    def __call__(
        self, question: str, candidates: Sequence[Candidate], docs: Documents, avoid: Sequence[tuple[str, int, int]] = ()
    ) -> list[Reading]: ...


def accepts_avoid(call) -> bool:
    """Whether a reader (or a reader network's `read`) takes `avoid=`: readers written before it
    did not, and still work — their spans that touch an avoided answer are dropped instead."""
    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "avoid" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def overlaps(span: tuple[int, int] | None, doc_id: str, avoid: Sequence[tuple[str, int, int]]) -> bool:
    """Whether the span (document offsets in `doc_id`) touches one of the `avoid` ranges."""
    return span is not None and any(d == doc_id and s < span[1] and span[0] < e for d, s, e in avoid)


class HeuristicReader:
    """The typed phrase of the kind the question word asks for (`find_phrase`), no confidence: the
    heuristic scorer counts a sentence with such a phrase as typed."""

    def __init__(self, config: Config):
        self.config = config

    def __call__(self, question: str, candidates: Sequence[Candidate], docs: Documents | None = None) -> list[Reading]:
        # No `avoid`: the answer stage drops a span on an earlier answer (rag.answering.pipeline.read).
        kind = question_type(question)
        readings = []
        for c in candidates:
            found = find_phrase(c.text, kind, question, self.config)
            span = None if found is None else (c.start + found[0], c.start + found[1])
            readings.append(Reading(0.0, span))
        return readings


# Name → factory (see rag.answering.registry).
READERS: dict[str, Factory] = {"heuristic": HeuristicReader, "trained": "rag.answering.neural:ModelReader"}


@functools.lru_cache(maxsize=4)
def make_reader(config: Config) -> Reader:
    """The reader `config.reader` names, made once per configuration (a model loads once); a
    folder path is a model the user brings (`rag.reader.external`)."""
    if config.reader not in READERS and Path(config.reader).expanduser().exists():
        return create(READERS, "trained", config, "Leser")  # the same reader, with the user's model
    return create(READERS, config.reader, config, "Leser")
