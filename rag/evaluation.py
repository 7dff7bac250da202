"""`rag eval`: how well do the quoted answers answer a question set?

Question sets are our JSONL (``{"id", "question", "answers": [...], "sources": [doc ids]}``,
``answers: []`` means the system should abstain) or SQuAD-format JSON (XQuAD, GermanQuAD), whose
paragraphs become the documents. Distractor articles (a folder or the 10kGNAD CSV) make retrieval
harder. The index is built once per set of documents + index settings in a cache folder.

For code (e.g. tuning)::

    items, docs = load_qa("xquad-de-dev.json")
    index = build_eval_index(docs + load_distractors("10kGNAD-test.csv", 300))
    metrics = evaluate(items, index, k=5, mode="hybrid")

All answer metrics are over answerable questions; a question answered with an abstention
counts as a miss in all of them.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re
import statistics
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .config import Config
from .corpus import Document, load_corpus, make_title
from .errors import RagError
from .progress import Progress, progress_bar
from .retrieval import MODES

__all__ = [
    "QAItem", "QuestionResult", "normalize", "contains_answer", "load_qa", "load_jsonl_qa", "load_squad",
    "load_distractors", "documents_hash", "build_eval_index", "run_questions", "compute_metrics", "evaluate",
    "failures", "write_failures", "format_metrics", "default_cache_dir", "run_eval", "percentile", "EVAL_DIR",
    "load_conversations", "is_conversation_file", "chats", "after_chats",
]

# The repository's question sets and articles (see eval/README.md): the defaults of `make eval`,
# `rag bench`, bench/peers.py and the tests.
EVAL_DIR = Path(__file__).resolve().parent.parent / "eval"


# ---------------------------------------------------------------- data


@dataclass
class QAItem:
    id: str
    question: str
    answers: list[str]  # [] = the corpus does not answer it: the system should abstain
    sources: list[str] = field(default_factory=list)  # doc ids that answer it
    group: str | None = None  # the article it was written on: train/dev splits go by it
    history: list[str] = field(default_factory=list)  # earlier questions of its chat, oldest first
    turn: int | None = None  # 0-based position in its chat (conversation files)
    kind: str | None = None  # a chat turn's kind (CHAT_KINDS), where the file gives one

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class QuestionResult:
    """One question run through `RagService.answer`, with what the metrics need."""

    item: QAItem
    abstained: bool
    confidence: float
    passages: list[dict]  # doc_id, title, text, highlighted, score (the answer's quotes, best first)
    latency_ms: float
    retrieved: list[str] | None = None  # doc ids of RagService.retrieve(question, k), when there is one
    context: str | None = None  # the earlier question the answer leaned on (Answer.context)
    withheld: list[dict] = field(default_factory=list)  # when abstained: the quotes it would have given (Answer.withheld)
    rank: int | None = None  # 1-based rank of the first quote containing an answer
    best_guess_hit: bool = False  # the first quote, given or withheld, holds an answer (risk–coverage)
    source_hit: bool = False
    retrieval_source_hit: bool = False
    highlight_hit: bool = False
    phrase_hit: bool = False
    exact_match: float = 0.0  # of the answer phrase ("Antwort") against the expected answers
    f1: float = 0.0

    @property
    def top1(self) -> bool:
        return self.rank == 1

    def reasons(self) -> list[str]:
        """Why this question counts as a miss ([] when it does not)."""
        out = []
        if self.item.answerable:
            if self.abstained:
                out.append("wrongly_abstained")
            else:
                if not self.top1:
                    out.append("not_in_top1" if self.rank is None else f"answer_at_rank_{self.rank}")
                if not self.highlight_hit:
                    out.append("highlight_miss")
                elif not self.phrase_hit:
                    out.append("answer_phrase_miss")  # the sentence holds the answer, the phrase marked in it does not
        elif not self.abstained:
            out.append("should_abstain")
        return out


# ---------------------------------------------------------------- answer matching

_QUOTES = "„“”\"‚‘’'«»‹›‟‛`´″′"
_DASHES = "‐‑‒–—―−-"
_TRANSLATE = {ord(c): '"' for c in _QUOTES} | {ord(c): "-" for c in _DASHES} | {0xAD: None, 0x200B: None}


def normalize(text: str) -> str:
    """NFC, one quote style, one dash, whitespace collapsed, case-folded."""
    text = unicodedata.normalize("NFC", text or "").translate(_TRANSLATE)
    return " ".join(text.split()).casefold()


_ARTICLES = {"der", "die", "das", "den", "dem", "des", "ein", "eine", "einer", "einen", "einem", "eines", "a", "an", "the"}


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style answer normalisation for German: case-folded words without punctuation and
    without articles (German and English)."""
    words = re.findall(r"\w+", normalize(text))
    return [w for w in words if w not in _ARTICLES]


def span_f1_em(prediction: str, answers: Iterable[str]) -> tuple[float, float]:
    """(exact match, token F1) of a predicted answer against the best of the gold answers."""
    pred = answer_tokens(prediction)
    best_em = best_f1 = 0.0
    for gold in answers:
        ref = answer_tokens(gold)
        best_em = max(best_em, float(pred == ref))
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            p, r = common / len(pred), common / len(ref)
            best_f1 = max(best_f1, 2 * p * r / (p + r))
    return best_em, best_f1


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether any expected answer occurs in `text` (normalised substring match)."""
    hay = normalize(text)
    return any((n := normalize(a)) and n in hay for a in answers)


# ---------------------------------------------------------------- loading question sets


def _prefix(path: Path) -> str:
    """'xquad-de-dev.json' → 'xquad', 'GermanQuAD_test.json' → 'germanquad', '10kGNAD-test.csv' → '10kgnad'."""
    head = re.split(r"[^0-9A-Za-z]", path.stem, maxsplit=1)[0].lower()
    return head or "doc"


def _slug(text: str) -> str:
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^0-9a-zA-Z]+", "-", s).strip("-").lower()
    return s or "artikel"


def _str_list(value, where: str, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):  # SQuAD-style [{"text": ...}] is accepted too
        value = [v.get("text") if isinstance(v, dict) else v for v in value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise RagError(f"{where}: Feld „{name}“ muss eine Liste von Zeichenketten sein.")
    return list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))


def _json_lines(path: Path) -> Iterable[tuple[int, str, object]]:
    """(line number, „file, Zeile n“, parsed object) of every non-blank line; RagError for bad JSON."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}, Zeile {lineno}"
        try:
            yield lineno, where, json.loads(line)
        except json.JSONDecodeError as e:
            raise RagError(f"{where}: kein gültiges JSON ({e.msg}).") from None


def load_jsonl_qa(path: str | Path) -> list[QAItem]:
    path = Path(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for lineno, where, obj in _json_lines(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise RagError(f"{where}: Feld „question“ fehlt.")
        if "answers" not in obj:
            raise RagError(f"{where}: Feld „answers“ fehlt ([] heißt: keine Antwort erwartet).")
        qid = str(obj.get("id") or f"{path.stem}#{lineno}")
        if qid in seen:
            raise RagError(f"{where}: ID {qid} doppelt.")
        seen.add(qid)
        answers, sources = _str_list(obj["answers"], where, "answers"), _str_list(obj.get("sources"), where, "sources")
        # news-qa names the one article a question was written on ("doc"); it answers unless answers is [].
        doc = obj.get("doc") if isinstance(obj.get("doc"), str) else None
        if doc and answers and not sources:
            sources = [doc]
        items.append(QAItem(qid, obj["question"].strip(), answers, sources, group=doc))
    if not items:
        raise RagError(f"Keine Fragen in {path}.")
    return items


def is_conversation_file(path: str | Path) -> bool:
    """Whether a JSONL file holds chats (`{"id", "turns": […]}` per line) rather than questions."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    try:
        _, _, first = next(_json_lines(path), (0, "", None))
    except RagError:  # not JSON: load_jsonl_qa names the line
        return False
    return isinstance(first, dict) and "turns" in first


# The kinds of chat turns (conversations-dev2.jsonl): the chat's first question; a follow-up that
# cannot be understood alone; a self-contained question about another story; a question no article
# answers; a follow-up about a detail no article gives.
CHAT_KINDS = ("first", "follow", "switch", "unrelated", "follow-unanswerable")


def load_conversations(path: str | Path) -> list[QAItem]:
    """Chats, one JSON object per line: ``{"id", "turns": [{"question", "answers", "doc", "kind"?}, …]}``
    (``answers: []``: the corpus does not answer that turn; `kind`: one of CHAT_KINDS). One item per turn, id ``<chat>#<n>``
    (n from 1), with the chat's earlier questions as `history`, in chat order."""
    path = Path(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for lineno, where, obj in _json_lines(path):
        turns = obj.get("turns") if isinstance(obj, dict) else None
        if not isinstance(turns, list) or not turns:
            raise RagError(f"{where}: Feld „turns“ fehlt oder ist leer.")
        chat = str(obj.get("id") or f"{path.stem}#{lineno}")
        if chat in seen:
            raise RagError(f"{where}: ID {chat} doppelt.")
        seen.add(chat)
        history: list[str] = []
        for n, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("question"), str) or not turn["question"].strip():
                raise RagError(f"{where}, Zug {n + 1}: Feld „question“ fehlt.")
            if "answers" not in turn:
                raise RagError(f"{where}, Zug {n + 1}: Feld „answers“ fehlt ([] heißt: keine Antwort erwartet).")
            answers = _str_list(turn["answers"], where, "answers")
            doc = turn.get("doc") if isinstance(turn.get("doc"), str) else None
            sources = _str_list(turn.get("sources"), where, "sources") or ([doc] if doc and answers else [])
            question = turn["question"].strip()
            kind = turn.get("kind") if isinstance(turn.get("kind"), str) else None
            items.append(QAItem(f"{chat}#{n + 1}", question, answers, sources, group=doc, history=list(history), turn=n, kind=kind))
            history.append(question)
    if not items:
        raise RagError(f"Keine Gespräche in {path}.")
    return items


def chats(items: Sequence[QAItem]) -> list[list[QAItem]]:
    """Conversation items (load_conversations) regrouped into their chats, in order."""
    out: list[list[QAItem]] = []
    for it in items:
        if it.turn == 0 or not out:
            out.append([])
        out[-1].append(it)
    return out


def after_chats(items: Sequence[QAItem], conversations: Sequence[QAItem], seed: int = 0) -> list[QAItem]:
    """Every item asked after a whole other chat (its questions as history), drawn at random
    (seeded) among the chats that mention none of the item's articles: does a question that brings
    its own topic stay unharmed by an unrelated conversation before it?"""
    import random

    rng = random.Random(seed)
    pool = chats(conversations)
    out = []
    for it in items:
        own = set(it.sources) | ({it.group} if it.group else set())
        unrelated = [c for c in pool if not own & {t.group for t in c if t.group}]
        if not unrelated:
            raise RagError("Kein Gespräch ohne die Artikel der Frage gefunden.")
        chat = rng.choice(unrelated)
        out.append(QAItem(it.id, it.question, it.answers, it.sources, it.group, history=[t.question for t in chat], turn=len(chat)))
    return out


def load_squad(path: str | Path | None = None, data: dict | None = None, prefix: str | None = None) -> tuple[list[QAItem], list[Document]]:
    """SQuAD-format JSON (v1.1 or v2.0): paragraphs → documents `<prefix>/<title-slug>/<n>`, questions → items.

    SQuAD 2.0 questions marked `is_impossible` expect an abstention."""
    if data is None:
        path = Path(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise RagError(f"{path.name}: kein gültiges JSON ({e.msg}).") from None
    if prefix is None:
        prefix = _prefix(Path(path)) if path is not None else "squad"
    name = Path(path).name if path is not None else "squad"
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RagError(f"{name}: kein SQuAD-Format (Feld „data“ fehlt).")
    items: list[QAItem] = []
    docs: list[Document] = []
    slugs: set[str] = set()
    seen: set[str] = set()
    for a_no, article in enumerate(data["data"]):
        title = " ".join(str(article.get("title") or f"Artikel {a_no}").replace("_", " ").split())
        slug = base = _slug(title)
        n = 2
        while slug in slugs:
            slug, n = f"{base}-{n}", n + 1
        slugs.add(slug)
        for p_no, para in enumerate(article.get("paragraphs", [])):
            context = para.get("context") or ""
            if not context.strip():
                continue
            doc_id = f"{prefix}/{slug}/{p_no}"
            docs.append(Document(id=doc_id, text=unicodedata.normalize("NFC", context.strip()), title=title, date=None, source=name))
            for q_no, qa in enumerate(para.get("qas", [])):
                question = (qa.get("question") or "").strip()
                if not question:
                    continue
                qid = str(qa.get("id") or f"{doc_id}#{q_no}")
                if qid in seen:
                    qid = f"{qid}#{doc_id}"
                seen.add(qid)
                texts = (a["text"] for a in qa.get("answers", []) if a.get("text", "").strip())
                answers = [] if qa.get("is_impossible") else list(dict.fromkeys(texts))
                # Grouped by the article's position, as the reader's training split does (all languages alike).
                items.append(QAItem(qid, question, answers, [doc_id], group=f"xquad-{a_no:02d}"))
    if not items:
        raise RagError(f"Keine Fragen in {name}.")
    return items, docs


def load_qa(path: str | Path) -> tuple[list[QAItem], list[Document] | None]:
    """(questions, documents): documents only for SQuAD files, which bring their paragraphs along."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"Fragendatei nicht gefunden: {path}")
    if path.suffix.lower() != ".jsonl":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "data" in data:
            return load_squad(path, data=data)
        if path.suffix.lower() == ".json":
            raise RagError(f"{path.name}: kein SQuAD-Format (Feld „data“ fehlt).")
    return load_jsonl_qa(path), None


GNAD_CSV = EVAL_DIR / "data" / "10kGNAD-test.csv"


def load_gnad(path: str | Path = GNAD_CSV) -> list[Document]:
    """The 10kGNAD articles as news-qa names them: `gnad-NNNN`, the 0-based CSV row."""
    return [
        Document(id=f"gnad-{row_no - 1:04d}", text=text, title=make_title(text[:1000]), date=None, source=f"10kGNAD#{row_no - 1}")
        for row_no, _, text in gnad_rows(path)
    ]


def load_distractors(path: str | Path, limit: int | None = None) -> list[Document]:
    """Extra real articles: a corpus folder (ids prefixed with the folder name), or the 10kGNAD CSV
    (``label;'text'``, ids `10kgnad/<row>` with 1-based rows, title = first sentence). The first `limit`."""
    path = Path(path)
    limit = None if limit is None or limit <= 0 else limit
    if path.is_dir():
        prefix = _slug(path.resolve().name)
        docs = load_corpus(path).documents[:limit]
        return [Document(id=f"{prefix}/{d.id}", text=d.text, title=d.title, date=d.date, source=d.source, url=d.url) for d in docs]
    if not path.is_file():
        raise RagError(f"Ablenkartikel nicht gefunden: {path}")
    prefix = _prefix(path)
    return [
        Document(id=f"{prefix}/{row_no}", text=text, title=make_title(text[:1000]), date=None, source=f"{path.name}#{row_no}")
        for row_no, _, text in itertools.islice(gnad_rows(path), limit)
    ]


def gnad_rows(path: str | Path) -> Iterator[tuple[int, str, str]]:
    """(1-based row, label, NFC text) of each non-empty article of a 10kGNAD CSV (``label;'text'``;
    a row of one field is a text without label)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row_no, row in enumerate(csv.reader(f, delimiter=";", quotechar="'"), start=1):
            if not row:
                continue
            text = unicodedata.normalize("NFC", (row[-1] if len(row) >= 2 else row[0]).replace("\r\n", "\n")).strip()
            if text:
                yield row_no, (row[0] if len(row) >= 2 else ""), text


# ---------------------------------------------------------------- the cached eval index


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("rag")) / "eval"


def documents_hash(documents: Sequence[Document], config: Config) -> str:
    """Identifies an eval index: every document (id + content) and the settings that shape the index."""
    h = hashlib.sha256()
    from .store import index_settings

    h.update(json.dumps(index_settings(config), sort_keys=True).encode())
    for d in sorted(documents, key=lambda d: d.id):
        h.update(f"\n{d.id}\t{d.content_hash}\t{d.source}".encode("utf-8"))
    return h.hexdigest()[:16]


def build_eval_index(
    documents: Sequence[Document],
    cache_dir: str | Path | None = None,
    config: Config | None = None,
    embedder=None,
    progress: Progress | None = None,
):
    """Build (or reuse) the index of exactly these documents under `cache_dir/<hash>`.

    The documents are written as one .jsonl into `<hash>/corpus/` and indexed with build_index,
    so they go through the same loading as a user's corpus. Embeddings are shared by all eval
    indexes under `cache_dir` (one embcache.sqlite, keyed by model and chunk text)."""
    from .store import build_index

    config = config or Config()
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RagError(f"Dokument-ID doppelt: {dup}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache_dir / documents_hash(documents, config)
    corpus_dir, index_dir = root / "corpus", root / "index"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    index_dir.mkdir(parents=True, exist_ok=True)
    target = corpus_dir / "documents.jsonl"
    if not target.exists():
        tmp = corpus_dir / f".documents.{uuid.uuid4().hex}.tmp"  # hidden: load_corpus skips it
        with open(tmp, "w", encoding="utf-8") as f:
            for d in documents:
                record = {"id": d.id, "text": d.text, "title": d.title, "date": d.date, "source": d.source, "url": d.url}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    shared = cache_dir / "embcache.sqlite"
    link = index_dir / "embcache.sqlite"
    if not link.exists() and not link.is_symlink():
        try:
            link.symlink_to(shared.resolve())
        except OSError:
            pass  # then this index keeps its own cache
    return build_index(corpus_dir, index_dir, config, embedder=embedder, progress=progress)


# ---------------------------------------------------------------- running and scoring


def _passage_dict(p) -> dict:
    return {
        "doc_id": p.doc_id, "title": p.title, "text": p.text, "highlighted": p.highlighted,
        # The answering phrase (falls back to the highlight where passages have no separate phrase).
        "answer_text": getattr(p, "answer_text", p.highlighted),
        "score": round(float(p.score), 4), "start": p.start, "end": p.end,
    }


def run_questions(
    items: Sequence[QAItem], index, k: int = 5, mode: str | None = None, progress: Progress | None = None, history: bool = True
) -> list[QuestionResult]:
    """Ask every question with `index.answer(question, k=k, mode=mode)` and score it; `index` is an
    Index, a RagService or anything with such an `answer` method. Items with a `history` are asked
    with it (`history=`), in the given order, unless `history` is False.

    One warm-up call first, so latencies are warm. `index.retrieve` (when present) is called
    too, untimed, for the retrieval-only source recall."""
    report = progress or (lambda frac, msg: None)
    index = _service(index)
    clear_caches = getattr(index, "clear_caches", None)
    if clear_caches is not None:
        clear_caches()  # memoised vectors from an earlier run would flatter the latencies
    if items:
        index.answer("Wer hat das gesagt?", k=k, mode=mode)  # warm-up: model and lazy tables loaded
    retrieve = getattr(index, "retrieve", None)
    results = []
    for i, item in enumerate(items):
        extra = {"history": list(item.history)} if history and item.history else {}
        if extra:
            # In a chat the earlier turns were answered before this one (and their topics kept):
            # ask them first, untimed (in a conversation file they were: these calls are memo hits).
            for n, earlier in enumerate(item.history):
                index.answer(earlier, k=k, mode=mode, history=item.history[:n])
        t = time.perf_counter()
        ans = index.answer(item.question, k=k, mode=mode, **extra)
        ms = (time.perf_counter() - t) * 1000
        passages = [] if ans.abstained else list(ans.passages)[:k]
        r = QuestionResult(item, bool(ans.abstained), float(ans.confidence), [_passage_dict(p) for p in passages], ms)
        r.context = getattr(ans, "context", None)
        r.withheld = [_passage_dict(p) for p in getattr(ans, "withheld", [])[:1]]
        if retrieve is not None:
            r.retrieved = [p.doc_id for p in retrieve(item.question, k=k, mode=mode)]
        score_result(r, k)
        results.append(r)
        report((i + 1) / len(items), f"Frage {i + 1}/{len(items)}")
    return results


def _service(index):
    """A RagService around an Index; anything else (a service, a test's stub) as it is."""
    from .service import RagService
    from .store import Index

    return RagService.of(index) if isinstance(index, Index) else index


def score_result(r: QuestionResult, k: int) -> QuestionResult:
    answers, sources = r.item.answers, set(r.item.sources)
    quotes = r.passages[:k]
    r.rank = next((n for n, p in enumerate(quotes, 1) if answers and contains_answer(p["text"], answers)), None)
    r.source_hit = any(p["doc_id"] in sources for p in quotes)
    r.retrieval_source_hit = r.retrieved is not None and any(d in sources for d in r.retrieved[:k])
    guess = (quotes or r.withheld)[:1]
    r.best_guess_hit = bool(guess) and bool(answers) and contains_answer(guess[0]["text"], answers)
    r.highlight_hit = bool(quotes) and bool(answers) and contains_answer(quotes[0]["highlighted"], answers)
    r.phrase_hit = bool(quotes) and bool(answers) and contains_answer(quotes[0].get("answer_text", quotes[0]["highlighted"]), answers)
    if quotes and answers:
        r.exact_match, r.f1 = span_f1_em(quotes[0].get("answer_text", quotes[0]["highlighted"]), answers)
    return r


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) of `values` by nearest rank; None for no values."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


COVERAGES = (1.0, 0.9, 0.8, 0.7)


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool], coverages: Sequence[float] = COVERAGES) -> dict[str, float]:
    """Accuracy among the `coverage` share of questions answered with the highest confidence
    ("100%" … "70%"; {} for no questions)."""
    if not len(confidence):
        return {}
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    out = {}
    for c in coverages:
        n = max(1, int(round(c * len(order))))
        out[f"{round(c * 100)}%"] = sum(bool(correct[i]) for i in order[:n]) / n
    return out


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def compute_metrics(results: Sequence[QuestionResult], k: int = 5, mode: str | None = None) -> dict:
    """The metrics dict (ratios in [0, 1]; None where undefined, e.g. no question of that kind)."""
    answerable = [r for r in results if r.item.answerable]
    unanswerable = [r for r in results if not r.item.answerable]
    with_sources = [r for r in answerable if r.item.sources]
    abstained = [r for r in results if r.abstained]
    n = len(answerable)
    m: dict = {
        "questions": len(results),
        "answerable": n,
        "unanswerable": len(unanswerable),
        "k": k,
        "mode": mode,
    }
    for top in (1, 3, 5):
        m[f"answer_in_top{top}"] = _ratio(sum(1 for r in answerable if r.rank is not None and r.rank <= top), n) if top <= k else None
    m["mrr"] = None if n == 0 else sum(1 / r.rank for r in answerable if r.rank) / n
    m["source_recall_at_k"] = _ratio(sum(r.source_hit for r in with_sources), len(with_sources))
    has_retrieval = any(r.retrieved is not None for r in with_sources)
    retrieval_hits = sum(r.retrieval_source_hit for r in with_sources)
    m["retrieval_source_recall_at_k"] = _ratio(retrieval_hits, len(with_sources)) if has_retrieval else None
    m["highlight_accuracy"] = _ratio(sum(r.highlight_hit for r in answerable), n)
    m["answer_phrase_accuracy"] = _ratio(sum(r.phrase_hit for r in answerable), n)
    # SQuAD style: the bold answer phrase against the expected answers (an abstention scores 0).
    m["answer_exact_match"] = None if n == 0 else sum(r.exact_match for r in answerable) / n
    m["answer_f1"] = None if n == 0 else sum(r.f1 for r in answerable) / n
    m["abstained"] = len(abstained)
    m["abstention_precision"] = _ratio(sum(1 for r in abstained if not r.item.answerable), len(abstained))
    m["abstention_recall"] = _ratio(sum(1 for r in unanswerable if r.abstained), len(unanswerable))
    m["wrongly_abstained"] = sum(1 for r in answerable if r.abstained)
    m["wrongly_abstained_rate"] = _ratio(m["wrongly_abstained"], n)
    m["wrongly_answered"] = sum(1 for r in unanswerable if not r.abstained)
    lengths = [len(p["text"]) for r in results for p in r.passages]
    m["median_quote_chars"] = statistics.median(lengths) if lengths else None
    # First-quote accuracy when only the most confident answerable questions are answered (an
    # abstained question counts with the quote it withheld).
    m["risk_coverage"] = risk_coverage([r.confidence for r in answerable], [r.best_guess_hit for r in answerable])
    chatted = [r for r in results if r.item.history]
    # Share of questions asked with a history whose answer leaned on it (Answer.context).
    m["context_used"] = _ratio(sum(1 for r in chatted if r.context), len(chatted)) if chatted else None
    latencies = [r.latency_ms for r in results]
    m["latency_p50_ms"] = percentile(latencies, 0.50)
    m["latency_p95_ms"] = percentile(latencies, 0.95)
    return m


def evaluate(qa_items: Sequence[QAItem], index, k: int = 5, mode: str | None = None) -> dict:
    """Run the questions against `index` (an Index, a RagService or anything with `.answer(q, k=, mode=)`)
    and return the metrics."""
    mode = mode or getattr(getattr(index, "config", None), "retriever", None)
    return compute_metrics(run_questions(qa_items, index, k=k, mode=mode), k=k, mode=mode)


def failures(results: Sequence[QuestionResult]) -> list[dict]:
    """One record per miss (not in top-1, highlight miss, wrong abstention), readable on its own."""
    out = []
    for r in results:
        reasons = r.reasons()
        if not reasons:
            continue
        out.append({
            "id": r.item.id,
            "question": r.item.question,
            "expected_answers": r.item.answers,
            "expected_sources": r.item.sources,
            "reasons": reasons,
            "abstained": r.abstained,
            "confidence": round(r.confidence, 4),
            "answer_rank": r.rank,
            "source_in_quotes": r.source_hit,
            "retrieved_doc_ids": r.retrieved,
            "returned": [
                {"doc_id": p["doc_id"], "title": p["title"], "highlighted": p["highlighted"], "answer_text": p.get("answer_text"),
                 "score": p["score"], "text": p["text"]}
                for p in r.passages
            ],
        })
    return out


def write_failures(results: Sequence[QuestionResult], path: str | Path) -> int:
    records = failures(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return len(records)


# ---------------------------------------------------------------- the table


def _pc(v: float | None) -> str:
    return f"{'n/a':>7}" if v is None else f"{100 * v:5.1f} %"


def _count(v: float | None, n: int) -> str:
    return "" if v is None else f"({round(v * n)}/{n})"


def format_metrics(m: dict, title: str = "") -> str:
    n = m["answerable"]
    k = m["k"]
    rows = []
    head = f"{m['questions']} Fragen/questions ({n} beantwortbar/answerable, {m['unanswerable']} ohne Antwort/unanswerable)"
    rows.append(f"{title} · {head} · {m['mode'] or 'default'} · k={k}" if title else f"{head} · {m['mode'] or 'default'} · k={k}")
    label = lambda s: f"  {s:<44}"  # noqa: E731
    for top in (1, 3, 5):
        if m[f"answer_in_top{top}"] is not None:
            v = m[f"answer_in_top{top}"]
            rows.append(label(f"Antwort im Zitat / answer in top-{top} quote") + f"{_pc(v)} {_count(v, n)}")
    rows.append(label("MRR") + ("n/a" if m["mrr"] is None else f"{m['mrr']:.3f}"))
    rows.append(label(f"Quelle in Zitaten / source recall@{k}") + _pc(m["source_recall_at_k"]))
    if m.get("retrieval_source_recall_at_k") is not None:
        rows.append(label(f"Quelle im Retrieval / retrieval recall@{k}") + _pc(m["retrieval_source_recall_at_k"]))
    rows.append(label("Hervorhebung / highlight accuracy") + f"{_pc(m['highlight_accuracy'])} {_count(m['highlight_accuracy'], n)}")
    if m.get("answer_phrase_accuracy") is not None and m["answer_phrase_accuracy"] != m["highlight_accuracy"]:
        v = m["answer_phrase_accuracy"]
        rows.append(label("Antwortphrase / answer phrase accuracy") + f"{_pc(v)} {_count(v, n)}")
    if m.get("answer_f1") is not None:
        rows.append(label("„Antwort“ exact match / token F1") + f"{m['answer_exact_match']:.3f} / {m['answer_f1']:.3f}")
    rows.append(label("Enthaltung / abstention precision") + f"{_pc(m['abstention_precision'])} ({m['abstained']} enthalten/abstained)")
    v = m["abstention_recall"]
    rows.append(label("Enthaltung / abstention recall") + f"{_pc(v)} {_count(v, m['unanswerable'])}")
    rate = _pc(m["wrongly_abstained_rate"]).strip()
    rows.append(label("fälschlich enthalten / wrongly abstained") + f"{m['wrongly_abstained']} ({rate} der beantwortbaren/of answerable)")
    if m.get("risk_coverage"):
        cells = " · ".join(f"{c}: {_pc(v).strip()}" for c, v in m["risk_coverage"].items())
        rows.append(label("Risiko/risk–coverage (erstes Zitat, sicherste)") + cells)
    chars = m["median_quote_chars"]
    rows.append(label("Zitatlänge / quote length (median)") + ("n/a" if chars is None else f"{chars:.0f} Zeichen/chars"))
    if m["latency_p50_ms"] is not None:
        rows.append(label("Antwortzeit / latency p50 · p95") + f"{m['latency_p50_ms']:.0f} · {m['latency_p95_ms']:.0f} ms")
    return "\n".join(rows)


def metrics_json(m: dict) -> str:
    return json.dumps(m, ensure_ascii=False, indent=2)


def result_dict(r: QuestionResult) -> dict:
    d = asdict(r)
    d["item"] = asdict(r.item)
    return d


# ---------------------------------------------------------------- the command


def run_eval(
    file: str | Path | Sequence[str | Path],
    corpus: Sequence[str | Path] | None = None,
    distractors: str | Path | None = None,
    distractors_limit: int | None = None,
    mode: str | None = None,
    k: int = 5,
    failures_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    as_json: bool = False,
    show_progress: bool = False,
    echo: Callable[[str], None] = lambda s: None,
    config: Config | None = None,
    embedder=None,
    split: str = "all",
    readers: Sequence[str] | None = None,
    after: str | Path | None = None,
) -> str:
    """What `rag eval` does; returns the table (or JSON) to print. Notes go to `echo`.

    `split`: "dev" or "train" keeps the questions on articles of that side of the reader's
    training split (questions without an article, like the seed questions, are kept), "all" keeps
    every one. `readers`: the `Config.reader` values to compare (default: the config's).

    A conversation file (load_conversations) is asked twice, turn by turn with the chat's history
    and every turn alone, and reported per kind of turn where the file names them (CHAT_KINDS),
    else per turn position (first turns, follow-ups). `after`: a
    conversation file; every question is also asked after a random unrelated chat of it."""
    files = [Path(f) for f in ([file] if isinstance(file, (str, Path)) else file)]
    if not files:
        raise RagError("Keine Fragendatei angegeben.")
    if k < 1:
        raise RagError("-k muss mindestens 1 sein.")
    config = config or Config()
    if mode in MODES:
        config = config.replace(retriever=mode)
    chat_file = is_conversation_file(files[0])
    if len(files) > 1 and any(is_conversation_file(f) for f in files):
        raise RagError("Gesprächsdateien werden einzeln ausgewertet (eine Datei je Aufruf).")
    if chat_file:
        items, documents = load_conversations(files[0]), None
    else:
        items, documents = _load_many(files)
    items = select_split(items, split)
    background = load_conversations(after) if after is not None else []
    documents = list(documents or [])
    mentions = [it.group or "" for it in [*items, *background]]
    if not documents and not corpus and any(g.startswith("gnad-") for g in mentions):
        # news-qa and chats on 10kGNAD articles: every question is asked against all 10kGNAD articles.
        documents = load_gnad()
        if chat_file or background:
            corpus = [Path("corpus")]  # chats run over the seed articles too
    folders = [Path(c) for c in corpus] if corpus else ([] if documents else [Path("corpus")])
    for folder in folders:
        load = load_corpus(folder)
        for w in load.warnings:
            echo(f"Warnung: {w}")
        documents.extend(load.documents)
    if distractors is not None:
        documents.extend(load_distractors(distractors, distractors_limit))
    if not documents:
        raise RagError("Keine Dokumente: weder die Fragendatei noch --corpus bringt Artikel mit.")
    known = {d.id for d in documents}
    missing = sorted({s for it in items for s in it.sources} - known)
    if missing:
        echo(f"Warnung: {len(missing)} erwartete Quelle(n) nicht im Korpus, z. B. {', '.join(missing[:3])}")

    bar, progress = progress_bar("Index", show_progress)
    try:
        index = build_eval_index(documents, cache_dir, config, embedder=embedder, progress=progress)
    finally:
        bar.close()
    echo(f"Index {index.root}: {index.last_build.line()}")

    # (column suffix, questions, ask with their history?, which of the results count)
    kinds = [kd for kd in CHAT_KINDS if any(it.kind == kd for it in items)] if chat_file else []
    if kinds:
        # Per kind of turn: asked alone, and in its chat (the two runs through the chats give every column).
        runs = [
            (f"{kd} {label}", items, with_history, lambda it, kd=kd: it.kind == kd)
            for kd in kinds for label, with_history in (("allein", False), ("im Gespräch", True))
        ]
    elif chat_file:
        runs = [
            ("erste Fragen", items, True, lambda it: it.turn == 0),
            ("Folgefragen ohne Verlauf", items, False, lambda it: bool(it.turn)),
            ("Folgefragen mit Verlauf", items, True, lambda it: bool(it.turn)),
        ]
    elif background:
        runs = [("allein", items, False, None), ("nach anderem Gespräch", after_chats(items, background), True, None)]
    else:
        runs = [("", items, False, None)]
    modes = list(MODES) if mode == "all" else [mode]
    readers = list(readers or [config.reader])
    by_mode: dict = {}
    for reader in readers:
        # The same index version, read with another answer-span reader.
        read_index = index if reader == index.config.reader else index.with_config(index.config.replace(reader=reader))
        for m_name in modes:
            base = m_name or config.retriever
            if len(readers) > 1:
                base = f"{base} · {_reader_label(reader)}"
            done: dict[tuple[int, bool], tuple[list[QuestionResult], float]] = {}
            for label, questions, with_history, keep in runs:
                column = f"{base} · {label}" if label else base
                key = (id(questions), with_history)
                if key not in done:  # the first turns and the follow-ups come from one run through the chats
                    bar, progress = progress_bar(f"Fragen ({column})", show_progress)
                    started = time.perf_counter()
                    try:
                        done[key] = (run_questions(questions, read_index, k=k, mode=m_name, progress=progress, history=with_history),
                                     time.perf_counter() - started)
                    finally:
                        bar.close()
                results, seconds = done[key]
                results = [r for r in results if keep is None or keep(r.item)]
                metrics = compute_metrics(results, k=k, mode=m_name or config.retriever)
                metrics.update(reader=reader, split=split, file=" + ".join(map(str, files)), documents=len(index.documents),
                               seconds=round(seconds, 1))
                by_mode[column] = metrics
                if failures_path is not None:
                    path = Path(failures_path)
                    if len(modes) * len(readers) * len(runs) > 1:  # one file per column: name.hybrid.jsonl, …
                        path = path.with_name(f"{path.stem}.{'.'.join(_slug(part) for part in column.split(' · '))}{path.suffix}")
                    n = write_failures(results, path)
                    echo(f"{n} Fehlschläge → {path}")
    if len(by_mode) > 1:
        title = f"{' + '.join(f.name for f in files)} · {len(index.documents)} Dokumente/documents"
        return metrics_json(by_mode) if as_json else format_comparison(by_mode, title=title)
    if as_json:
        return metrics_json(metrics)
    return format_metrics(metrics, title=f"{' + '.join(f.name for f in files)} · {metrics['documents']} Dokumente/documents")


def _load_many(files: Sequence[Path]) -> tuple[list[QAItem], list[Document] | None]:
    """The questions of several question files, asked together (question ids must stay unique)."""
    items: list[QAItem] = []
    documents: list[Document] = []
    for f in files:
        more, docs = load_qa(f)
        items += more
        documents += docs or []
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RagError(f"Frage-ID {dup} kommt in mehreren Fragendateien vor.")
    return items, documents or None


def select_split(items: Sequence[QAItem], split: str) -> list[QAItem]:
    """The questions of one side of the reader's training split (by article; see rag.reader.data)."""
    from .reader.split import DEV_SHARE, is_dev

    if split not in ("all", "dev", "train"):
        raise RagError(f"Unbekannter Teil: {split} (erlaubt: all, dev, train)")
    if split == "all":
        return list(items)
    kept = [it for it in items if it.group is None or is_dev(it.group, DEV_SHARE) == (split == "dev")]
    if not kept:
        raise RagError(f"Keine Fragen im Teil „{split}“.")
    return kept


def _reader_label(reader: str) -> str:
    return reader if reader in ("heuristic", "trained") else Path(reader).name


# (label, metrics key, kind) of the comparison table's rows.
_COMPARE_ROWS = [
    ("questions (answerable)", "questions", "count"),
    ("answer in top-1 quote", "answer_in_top1", "pc"),
    ("answer in top-3 quotes", "answer_in_top3", "pc"),
    ("answer in top-5 quotes", "answer_in_top5", "pc"),
    ("MRR", "mrr", "f3"),
    ("source recall@k (quotes)", "source_recall_at_k", "pc"),
    ("highlight contains the answer", "highlight_accuracy", "pc"),
    ("answer phrase contains the answer", "answer_phrase_accuracy", "pc"),
    ("„Antwort“ exact match", "answer_exact_match", "f3"),
    ("„Antwort“ token F1", "answer_f1", "f3"),
    ("answer leaned on the history (context)", "context_used", "pc"),
    ("abstention precision", "abstention_precision", "pc"),
    ("abstention recall", "abstention_recall", "pc"),
    ("wrongly abstained", "wrongly_abstained", "int"),
    ("first quote, 100 % most confident answered", ("risk_coverage", "100%"), "pc"),
    ("first quote, 90 % most confident answered", ("risk_coverage", "90%"), "pc"),
    ("first quote, 80 % most confident answered", ("risk_coverage", "80%"), "pc"),
    ("first quote, 70 % most confident answered", ("risk_coverage", "70%"), "pc"),
    ("median quote length (chars)", "median_quote_chars", "int"),
    ("answer latency p50 / p95 (ms)", "latency_p50_ms", "lat"),
]


def format_comparison(by_mode: dict, title: str = "") -> str:
    """A Markdown table, one column per retriever (what the README shows)."""
    modes = list(by_mode)
    first = by_mode[modes[0]]
    lines = [f"{title} · {first['questions']} Fragen ({first['answerable']} beantwortbar) · k={first['k']}", ""]
    lines.append("| metric | " + " | ".join(modes) + " |")
    lines.append("|---|" + "---:|" * len(modes))
    for label, key, kind in _COMPARE_ROWS:
        cells = []
        for m in by_mode.values():
            v = (m.get(key[0]) or {}).get(key[1]) if isinstance(key, tuple) else m.get(key)
            if v is None:
                cells.append("n/a")
            elif kind == "pc":
                cells.append(_pc(v).strip())
            elif kind == "f3":
                cells.append(f"{v:.3f}")
            elif kind == "count":
                cells.append(f"{v} ({m['answerable']})")
            elif kind == "lat":
                cells.append(f"{v:.0f} / {m['latency_p95_ms']:.0f}")
            else:
                cells.append(f"{v:.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
