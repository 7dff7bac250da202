"""Training material for the reader, cut as the reader meets it at answer time.

Questions (vendored under `eval/`): `news-qa.jsonl` and `news-qa-2.jsonl` over the 10kGNAD
articles (half of news-qa-2 are unanswerable near-misses) and XQuAD (German plus the same articles
in other languages). Every question is run through the real answer stage — retrieval over the
whole training corpus (all 10kGNAD articles and the XQuAD paragraphs of the chosen languages),
candidate sentences, the windows `rag.answering.windows` plans — and the windows it would read
become the question's training windows, gold spans marked where its own article says the answer.

Everything is split **by article**: a question's article, and for XQuAD every translation of it,
is in train or in dev, never in both (`is_dev`). Inside train, a further share of the articles
(`is_calibration`) is kept out of the reader's own training: the combiner that turns the reader's
scores into probabilities is fitted on those.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from ..corpus import Document
    from ..store import Index

EVAL_DIR = Path(__file__).resolve().parents[2] / "eval"
NEWS_FILES = ("news-qa.jsonl", "news-qa-2.jsonl")
XQUAD_LANGS = ("de", "en", "es", "ro", "tr", "vi", "ru", "el", "zh", "ar", "hi", "th")


@dataclass(frozen=True)
class QAExample:
    """One question, with the article it was written on."""

    qid: str
    group: str  # the article: train/dev are split by it (for XQuAD shared by all translations)
    source: str  # "news" or "xquad-LANG"
    question: str
    answers: tuple[str, ...]  # verbatim spans; () when the corpus does not answer it
    doc_id: str  # the document it was written on (its answer, if any, is there)


@dataclass(frozen=True)
class PlannedWindow:
    doc_id: str
    start: int
    end: int
    gold: tuple[tuple[int, int], ...]  # answer spans inside the window (characters of the window text)


@dataclass(frozen=True)
class PlannedQuestion:
    example: QAExample
    windows: tuple[PlannedWindow, ...]  # what the answer stage reads, in its order
    retrieved: bool  # whether the planned windows held the answer (False: the gold window was added)


def xquad_path(eval_dir: Path, lang: str) -> Path:
    return eval_dir / "xquad-de-dev.json" if lang == "de" else eval_dir / "xquad-dev-other-languages" / f"xquad-{lang}-dev.json"


def load_examples(langs: Sequence[str], eval_dir: Path = EVAL_DIR) -> tuple[list[QAExample], list["Document"]]:
    """The news questions and XQuAD in `langs`, and the documents they are asked against: all
    10kGNAD articles and the XQuAD paragraphs (document ids `xquad-LANG/<title>/<n>`)."""
    from ..evaluation import load_gnad, load_jsonl_qa, load_squad

    docs = load_gnad(eval_dir / "data" / "10kGNAD-test.csv")
    examples = []
    for name in NEWS_FILES:
        for it in load_jsonl_qa(eval_dir / name):
            examples.append(QAExample(it.id, it.group, "news", _nfc(it.question), tuple(it.answers), it.group))
    for lang in langs:
        items, paragraphs = load_squad(xquad_path(eval_dir, lang), prefix=f"xquad-{lang}")
        docs += paragraphs
        for it in items:
            examples.append(QAExample(f"{lang}:{it.id}", it.group, f"xquad-{lang}", _nfc(it.question), tuple(it.answers), it.sources[0]))
    return examples, docs


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def answer_spans(text: str, answers: Iterable[str]) -> list[tuple[int, int]]:
    """Every occurrence of every answer in `text` (character spans)."""
    out = set()
    for a in answers:
        if a:
            out |= {(m.start(), m.end()) for m in re.finditer(re.escape(a), text)}
    return sorted(out)


def plan_question(index: "Index", ex: QAExample, max_windows: int) -> PlannedQuestion | None:
    """The windows the answer stage reads for `ex` (at most `max_windows`, in its order), gold
    spans marked in windows of the question's own document. When retrieval missed the answer, the
    window around its first occurrence replaces the last one, so every answerable question trains
    the span. None when an answerable question's answer is not verbatim in its document."""
    from ..answering.pipeline import planned_windows

    text = index.documents[ex.doc_id].text if ex.doc_id in index.documents else ""
    gold_spans = answer_spans(text, ex.answers)
    if ex.answers and not gold_spans:
        return None
    windows = [(d, a, b) for d, a, b in planned_windows(index, ex.question)][:max_windows]

    def gold_in(d: str, a: int, b: int) -> tuple[tuple[int, int], ...]:
        if d != ex.doc_id:
            return ()
        return tuple((s - a, e - a) for s, e in gold_spans if a <= s and e <= b)

    planned = [PlannedWindow(d, a, b, gold_in(d, a, b)) for d, a, b in windows]
    retrieved = not ex.answers or any(w.gold for w in planned)
    if not retrieved:
        s, e = gold_spans[0]
        sents = index.sentences(ex.doc_id)
        i = next(j for j, (a, b) in enumerate(sents) if a <= s < b)
        ctx = index.config.reader_context
        a, b = sents[max(0, i - ctx)][0], sents[min(len(sents) - 1, i + ctx)][1]
        while b < e and i + ctx < len(sents) - 1:  # an answer running past its sentence's window
            i += 1
            b = sents[min(len(sents) - 1, i + ctx)][1]
        gold = PlannedWindow(ex.doc_id, a, b, gold_in(ex.doc_id, a, b))
        planned = planned[: max_windows - 1] + [gold]
    return PlannedQuestion(ex, tuple(planned), retrieved)
