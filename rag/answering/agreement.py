"""Agreement across articles: which quoted articles give the same answer, and which say otherwise
in comparable terms."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..config import Config
from .candidates import Candidate
from .phrases import VALUED_KINDS, is_share, normalize_phrase, number_unit, phrase_value, time_shape

__all__ = ["Agreement", "comparable", "same_answer", "agreement_of", "corroborating"]


@dataclass
class Agreement:
    # (doc_id, answering phrase), one per article: the best answer and those that say the same …
    phrases: list[tuple[str, str]]
    # … and strong answers of other articles that say otherwise (comparable, but different).
    differing: list[tuple[str, str]] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.differing

    @property
    def line(self) -> str:
        def joined(pairs: list[tuple[str, str]]) -> str:
            return " · ".join(p for _, p in pairs)

        n, m = len(self.phrases), len(self.differing)
        if not m:
            return f"{n} Quellen stimmen überein: {joined(self.phrases)}"
        if n == 1:
            return f"{n + m} Quellen weichen voneinander ab: {joined(self.phrases + self.differing)}"
        verb = "weicht" if m == 1 else "weichen"
        return f"{n} Quellen stimmen überein: {joined(self.phrases)}; {m} {verb} ab: {joined(self.differing)}"

    def to_dict(self) -> dict:
        return {
            "phrases": [list(p) for p in self.phrases],
            "differing": [list(p) for p in self.differing],
            "agree": self.agree,
            "line": self.line,
        }


def comparable(a: str, b: str, kind: str | None) -> bool:
    """Whether two answering phrases answer in the same terms, so that a difference is a
    contradiction: 300 Kilometer and 175.000 Soldaten are not, nor are "2018" and "am Dienstag";
    different names are more often a wrong pick than a contradiction, and a share (5 Prozent) is not
    an amount (5 Millionen)."""
    if kind == "number":
        ua, ub = number_unit(a), number_unit(b)
        return is_share(a) == is_share(b) and (ua is None or ub is None or ua == ub)
    if kind == "time":
        return time_shape(a) == time_shape(b)
    if kind in ("place", "entity"):
        return normalize_phrase(a) == normalize_phrase(b)
    return True


def same_answer(a: str, b: str, kind: str | None = "number", tolerance: float = Config.agreement_tolerance) -> bool:
    """Whether two answering phrases say the same thing: values within `tolerance` (a share of the
    smaller), other phrases word for word."""
    if not comparable(a, b, kind):
        return False
    va, vb = (phrase_value(a), phrase_value(b)) if kind in VALUED_KINDS else (None, None)
    if va is not None and vb is not None:
        return max(va, vb) <= min(va, vb) * (1 + tolerance) + 1e-9
    return normalize_phrase(a) == normalize_phrase(b)


def agreement_of(
    phrases: list[tuple[str, str]], kind: str | None = "number", tolerance: float = Config.agreement_tolerance
) -> Agreement | None:
    """The first phrase (the best answer) with the others that say the same, and those that say
    otherwise in comparable terms; None unless at least two articles take part. Answers of no
    known kind (a reader's span for a „was …?“ question) agree word for word and never
    contradict: two different spans are more often two different facts."""
    if not phrases:
        return None
    first = phrases[0][1]
    same = [phrases[0]] + [p for p in phrases[1:] if same_answer(first, p[1], kind, tolerance)]
    differing = [p for p in phrases[1:] if p not in same and kind is not None and comparable(first, p[1], kind)]
    if len(same) + len(differing) < 2:
        return None
    return Agreement(phrases=same, differing=differing)


def corroborating(
    ranked: Sequence[Candidate], kind: str | None, text_of: Callable[[str], str], config: Config, threshold: float | None = None,
    embed: Callable[[list[Candidate]], None] | None = None,
) -> list[tuple[Candidate, str]]:
    """The answer of the best candidate and, per other article, the sentence that says the same,
    as (candidate, phrase), best first; `ranked` is sorted by score, `text_of(doc_id)` gives a
    document's text. Compares the spans the reader marked.

    Reports of one event repeat its facts, so an agreeing sentence of another article counts even
    somewhat below the best score (`corroboration_margin`). Of an article's agreeing sentences the one
    closest in meaning to the best one is taken: it is about the same event, where another sentence
    with the same figure may be about an earlier one ("das Treffen in Genf dauerte fast zwei Stunden").

    With a calibrated scorer (`threshold`, rag.answering.calibration) only answers it accepts take
    part: the best one and each agreeing one must score at least `threshold` — a green agreement
    line never stands over spans the reader does not believe. Without one, the rules' margins
    decide (`agreement_margin`, `corroboration_margin`). `embed` gives candidates their sentence
    vectors where they lack them (the trained reader's ranking needs none)."""
    # Without a known kind only a model reader's spans are compared (word for word).
    if not ranked or (kind is None and ranked[0].no_answer is None):
        return []
    window = [c for c in ranked[: config.corroboration_window * config.answer_pool] if c.span is not None]

    def phrase(c: Candidate) -> str:
        return text_of(c.doc_id)[c.span[0] : c.span[1]]

    if threshold is not None:
        window = [c for c in window if c.score >= threshold]

    # The anchor: the best sentence with an answer span, if it is nearly as good as the best overall.
    anchor = window[0] if window else None
    if anchor is None or (threshold is None and anchor.score < ranked[0].score - config.agreement_margin):
        return []
    if threshold is not None and anchor is not ranked[0]:
        return []
    a_phrase = phrase(anchor)
    agreeing: dict[str, list[tuple[Candidate, str]]] = {}
    for c in window:
        if c.doc_id == anchor.doc_id or (threshold is None and c.score < anchor.score - config.corroboration_margin):
            continue
        p = phrase(c)
        if same_answer(a_phrase, p, kind, config.agreement_tolerance):
            agreeing.setdefault(c.doc_id, []).append((c, p))
    several = [c for pairs in agreeing.values() if len(pairs) > 1 for c, _ in pairs]
    if several and embed is not None:
        embed([anchor, *several])  # only where an article has more than one agreeing sentence to choose from
    members: dict[str, tuple[float, Candidate, str]] = {}
    for doc, pairs in agreeing.items():
        for c, p in pairs:
            sim = float(c.vec @ anchor.vec) if c.vec is not None and anchor.vec is not None else c.score
            if doc not in members or sim > members[doc][0]:
                members[doc] = (sim, c, p)
    return [(anchor, a_phrase)] + [(c, p) for _, c, p in sorted(members.values(), key=lambda m: -m[1].score)]
