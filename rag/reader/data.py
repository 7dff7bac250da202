"""Training material for the reader: questions with verbatim answer spans, cut into the windows
the reader sees at answer time (a candidate sentence with its neighbours).

Sources (vendored under `eval/`): `news-qa.jsonl` over the 10kGNAD articles and XQuAD (German plus
the same articles in other languages). Both are split **by article**: a question's article, and
for XQuAD every translation of it, is either in train or in dev, never in both.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..chunking import split_sentences

EVAL_DIR = Path(__file__).resolve().parents[2] / "eval"
DEV_SHARE = 0.2  # of the articles, held out of training; `rag eval --split dev` asks about these


@dataclass(frozen=True)
class QAExample:
    """One question about one text (an article or a paragraph)."""

    qid: str
    group: str  # the article: train/dev are split by it
    question: str
    text: str
    answer: tuple[int, int] | None  # character span in `text`; None when the text does not answer


@dataclass(frozen=True)
class Window:
    """What the reader reads: a question and a few consecutive sentences of a text."""

    qid: str
    question: str
    text: str
    answer: tuple[int, int] | None  # character span inside `text`, or None


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def read_gnad(path: Path) -> list[str]:
    """The 10kGNAD CSV as it ships: row i is article `gnad-{i:04d}` (0-based, `;` and `'`)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [row[1] if len(row) > 1 else row[0] for row in csv.reader(f, delimiter=";", quotechar="'")]


def _locate(text: str, answer: str, hint: int | None) -> tuple[int, int] | None:
    """The answer's span in `text`: at `hint` when it is there, else its occurrence nearest to it."""
    if hint is not None and text[hint : hint + len(answer)] == answer:
        return hint, hint + len(answer)
    found = [m.start() for m in re.finditer(re.escape(answer), text)]
    if not found:
        return None
    best = min(found, key=lambda s: abs(s - (hint or 0)))
    return best, best + len(answer)


def news_examples(qa_path: Path, csv_path: Path) -> list[QAExample]:
    articles = read_gnad(csv_path)
    out = []
    for line in open(qa_path, encoding="utf-8"):
        if not line.strip():
            continue
        q = json.loads(line)
        text = articles[int(q["doc"].split("-")[1])]
        span = _locate(text, q["answers"][0], q.get("answer_start")) if q["answers"] else None
        if q["answers"] and span is None:
            continue  # an answer that is not verbatim in its article cannot be a training target
        out.append(QAExample(q["id"], q["doc"], _nfc(q["question"]), text, span))
    return out


def squad_examples(path: Path, lang: str) -> list[QAExample]:
    """SQuAD-format QA. A question's text is its whole article (paragraphs joined by blank lines),
    so that the other paragraphs give negatives on the same topic, as a news archive does. The
    group is the article's position, shared by all translations."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for a_no, article in enumerate(data):
        text, offsets = "", []
        for paragraph in article["paragraphs"]:
            offsets.append(len(text) + 2 if text else 0)
            text = f"{text}\n\n{paragraph['context']}" if text else paragraph["context"]
        for at, paragraph in zip(offsets, article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                span = None
                if answers:
                    found = _locate(paragraph["context"], answers[0]["text"], answers[0].get("answer_start"))
                    if found is None:
                        continue
                    span = (at + found[0], at + found[1])
                out.append(QAExample(f"{lang}:{qa['id']}", f"xquad-{a_no:02d}", _nfc(qa["question"]), text, span))
    return out


def is_dev(group: str, dev_share: float) -> bool:
    """A stable split by article (a hash of its id), the same on every machine."""
    h = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < dev_share


def load_examples(langs: tuple[str, ...], eval_dir: Path = EVAL_DIR) -> list[QAExample]:
    """news-qa plus XQuAD in `langs` ("de" is xquad-de-dev.json, the others come from
    xquad-dev-other-languages/)."""
    examples = news_examples(eval_dir / "news-qa.jsonl", eval_dir / "data" / "10kGNAD-test.csv")
    for lang in langs:
        examples += squad_examples(xquad_path(eval_dir, lang), lang)
    return examples


def xquad_path(eval_dir: Path, lang: str) -> Path:
    return eval_dir / "xquad-de-dev.json" if lang == "de" else eval_dir / "xquad-dev-other-languages" / f"xquad-{lang}-dev.json"


_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    # Prefix-5 words: a cheap stand-in for stems when choosing hard negatives.
    return {w.lower()[:5] for w in _WORD.findall(text) if len(w) > 3}


def windows_for(ex: QAExample, rng: random.Random, negatives: int, before: int = 1, after: int = 1) -> Iterator[Window]:
    """The window around the answering sentence (and one around a neighbour of it) as positives;
    windows around the sentences sharing most words with the question, which do not hold the
    answer, as negatives. Windows are cut exactly as at answer time: `before` sentences, the
    candidate, `after` sentences."""
    sents = split_sentences(ex.text)
    if not sents:
        return

    def window(c: int) -> tuple[int, int]:
        return sents[max(0, c - before)][0], sents[min(len(sents) - 1, c + after)][1]

    def inside(w: tuple[int, int]) -> bool:
        return ex.answer is not None and w[0] <= ex.answer[0] and ex.answer[1] <= w[1]

    def make(c: int) -> Window:
        s, e = window(c)
        span = (ex.answer[0] - s, ex.answer[1] - s) if inside((s, e)) else None
        return Window(ex.qid, ex.question, ex.text[s:e], span)

    centres = []
    if ex.answer is not None:
        hit = next((i for i, (s, e) in enumerate(sents) if s <= ex.answer[0] < e), None)
        if hit is None:
            return
        centres.append(hit)
        near = [c for c in (hit - 1, hit + 1) if 0 <= c < len(sents) and inside(window(c))]
        if near:
            centres.append(rng.choice(near))
    answer_text = ex.text[ex.answer[0] : ex.answer[1]] if ex.answer else None
    q = _words(ex.question)
    others = [
        c for c in range(len(sents))
        if c not in centres and not inside(window(c))
        and not (answer_text and answer_text in ex.text[slice(*window(c))])  # the same words elsewhere: not a clean negative
    ]
    others.sort(key=lambda c: (-len(q & _words(ex.text[sents[c][0] : sents[c][1]])), c))
    hard = others[: max(0, negatives - 1)]
    rest = others[len(hard) :]
    if rest and negatives:
        hard.append(rng.choice(rest))
    for c in centres + hard:
        yield make(c)
