"""After training: read held-out questions with the saved reader exactly as at answer time, fit the
combiner (`rag.answering.calibration.Combiner`) on the calibration questions, choose the
abstention threshold on the dev questions, and measure the dev figures (with a risk–coverage table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..answering.calibration import FEATURES, Combiner, candidate_features
from ..answering.neural import ModelReader
from ..answering.phrases import question_type
from ..answering.pipeline import gather, prepare, read
from ..config import Config
from ..evaluation import contains_answer, risk_coverage, span_f1_em
from ..retrieval import find_candidates
from .data import QAExample

if TYPE_CHECKING:
    from ..store import Index

__all__ = ["QuestionReading", "read_questions", "fit_combiner", "choose_threshold", "BASE_FEATURES"]


@dataclass
class QuestionReading:
    example: QAExample
    features: np.ndarray  # (read candidates, FEATURES)
    holds: np.ndarray  # per read candidate: its sentence holds an expected answer
    spans: list[str]  # per read candidate: the reader's span (its sentence without one)


def read_questions(index: "Index", reader, examples: Sequence[QAExample], desc: str, dense: bool = True) -> list[QuestionReading]:
    """Each question asked alone through the answer stage with `reader` (a WindowReader), up to the
    reader's scores: the features and labels of every sentence it read (with `dense`, their
    embedding similarity too, so that a combiner with and one without it can be compared)."""
    from tqdm import tqdm

    config: Config = index.config
    model = ModelReader(config, model=reader)
    out = []
    for ex in tqdm(examples, desc=desc, unit="Frage"):
        found = find_candidates(index, ex.question)
        if not found.passages:
            out.append(QuestionReading(ex, np.zeros((0, len(FEATURES))), np.zeros(0, bool), []))
            continue
        q = found.question
        cands = prepare(index, q, gather(index, q, found.passages, question_type(q)), windows=True, vectors=dense)
        read(index, q, cands, model)
        cands = [c for c in cands if c.log_prob is not None]
        text = {c.doc_id: index.documents[c.doc_id].text for c in cands}
        out.append(QuestionReading(
            ex,
            candidate_features(cands),
            np.array([bool(ex.answers) and contains_answer(c.text, ex.answers) for c in cands], dtype=bool),
            [text[c.doc_id][c.span[0] : c.span[1]] if c.span else c.text for c in cands],
        ))
    return out


BASE_FEATURES = tuple(f for f in FEATURES if f != "dense")


def fit_combiner(
    calib: Sequence[QuestionReading], dev: Sequence[QuestionReading], targets: dict[str, float],
    features: Sequence[str] = BASE_FEATURES,
) -> tuple[Combiner, dict]:
    """The logistic regression over `features`, fitted on the calibration questions' sentences, its
    threshold chosen on the dev questions (the highest that abstains on at most `targets[source]`
    of each source's answerable questions), and the dev figures per source."""
    from sklearn.linear_model import LogisticRegression

    cols = [FEATURES.index(f) for f in features]
    x = np.concatenate([r.features for r in calib])[:, cols]
    y = np.concatenate([r.holds for r in calib])
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / scale, y)
    fitted = dict(features=tuple(features), mean=tuple(map(float, mean)), scale=tuple(map(float, scale)),
                  coef=tuple(map(float, model.coef_[0])), intercept=float(model.intercept_[0]))
    best = [_best(Combiner(**fitted, threshold=0.0), r) for r in dev]
    limits = []
    for source, target in targets.items():
        conf = [p for r, (p, _) in zip(dev, best) if r.example.source == source and r.example.answers]
        if conf:
            limits.append(choose_threshold(conf, target))
    combiner = Combiner(**fitted, threshold=min(limits) if limits else 0.0)
    figures = {}
    for source in sorted({r.example.source for r in dev}):
        part = [(r, b) for r, b in zip(dev, best) if r.example.source == source]
        figures[source] = dev_figures([r for r, _ in part], [b for _, b in part], combiner.threshold)
    return combiner, figures


def _best(combiner: Combiner, r: QuestionReading) -> tuple[float, int | None]:
    """(the best probability, its candidate) of a question (0.0, None when nothing was read)."""
    if not len(r.features):
        return 0.0, None
    p = combiner.probabilities(r.features)
    i = int(np.argmax(p))
    return float(p[i]), i


def choose_threshold(answerable_confidence: Sequence[float], target: float) -> float:
    """The highest threshold at which at most `target` of these answerable questions (their best
    probability) fall below it."""
    v = sorted(answerable_confidence)
    return float(v[min(len(v) - 1, int(target * len(v)))])


def dev_figures(readings: Sequence[QuestionReading], best: Sequence[tuple[float, int | None]], threshold: float) -> dict:
    """Per source: the best sentence holds the answer, span EM/F1 (an abstention scores 0),
    abstention at `threshold`, and the risk–coverage of the answerable questions."""
    answerable = [(r, b) for r, b in zip(readings, best) if r.example.answers]
    unanswerable = [(r, b) for r, b in zip(readings, best) if not r.example.answers]
    holds, em, f1, conf = [], 0.0, 0.0, []
    for r, (p, i) in answerable:
        ok = i is not None and bool(r.holds[i])
        holds.append(ok)
        conf.append(p)
        if i is not None and p >= threshold:
            e, f = span_f1_em(r.spans[i], r.example.answers)
            em, f1 = em + e, f1 + f
    n = max(1, len(answerable))
    # The reader alone: its most probable span's sentence (what the combiner adds is the difference).
    lp = FEATURES.index("log_prob")
    reader_alone = sum(bool(r.holds[int(np.argmax(r.features[:, lp]))]) for r, _ in answerable if len(r.features))
    return {
        "questions": len(readings),
        "unanswerable": len(unanswerable),
        "best_sentence_holds_answer": round(sum(holds) / n, 4),
        "reader_alone_holds_answer": round(reader_alone / n, 4),
        "exact_match": round(em / n, 4),
        "f1": round(f1 / n, 4),
        "abstained_answerable": round(sum(p < threshold for p in conf) / n, 4),
        "abstained_unanswerable": round(sum(p < threshold for _, (p, _) in unanswerable) / max(1, len(unanswerable)), 4),
        "risk_coverage": {c: round(v, 4) for c, v in risk_coverage(conf, holds).items()},
    }
