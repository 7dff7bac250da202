"""Answers: verbatim quotes around the answering sentence, the answering phrase highlighted,
agreement across articles, and abstention when the evidence is too weak."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .retrieval import Passage, _allowed, clean_question, diversify, make_passage, merge_spans, rank_chunks

if TYPE_CHECKING:
    from .store import Index

ABSTAIN_MESSAGE = "Das steht nicht im Korpus: keiner der Artikel beantwortet diese Frage."


# ---------------------------------------------------------------- data


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


@dataclass
class Answer:
    question: str
    passages: list[Passage]
    abstained: bool
    confidence: float
    agreement: Agreement | None = None
    message: str = ""

    @property
    def phrase(self) -> str:
        """The answering phrase of the best passage ('' when abstained)."""
        return "" if self.abstained or not self.passages else self.passages[0].answer_text

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "abstained": self.abstained,
            "message": self.message,
            "phrase": self.phrase,
            "confidence": round(self.confidence, 4),
            "agreement": self.agreement.to_dict() if self.agreement else None,
            "passages": [p.to_dict() for p in self.passages],
        }


# ---------------------------------------------------------------- typed answers

_NUM_WORDS = (
    r"(?:ein|eine|einer|einem|einen|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|"
    r"zwanzig|dreißig|vierzig|fünfzig|hundert|tausend|anderthalb|eineinhalb|zweieinhalb|halbe[nr]?|\d+(?:[.,]\d+)?)"
)
_APPROX = r"(?:(?:rund|etwa|gut|knapp|fast|fast genau|beinahe|über|mehr als|weniger als|nahezu|ca\.|circa|ungefähr|bis zu|mindestens|höchstens|insgesamt|nur|genau)\s+)?"
_UNIT_TIME = r"(?:Stunden?|Std\.|Minuten?|Min\.|Sekunden?|Tagen?|Tage|Wochen?|Monaten?|Monate|Jahren?|Jahre|Jahrzehnten?|Jahrhunderten?)"
_MONTHS = r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember)"
_WEEKDAYS = r"(?:Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag)(?:abend|morgen|nachmittag|vormittag|mittag)?"

PATTERNS = {
    "duration": re.compile(
        rf"\b{_APPROX}(?:{_NUM_WORDS}\s*-?\s*{_UNIT_TIME}(?:\s+und\s+{_NUM_WORDS}\s+{_UNIT_TIME})?"
        rf"|{_NUM_WORDS}(?:stündig|minütig|tägig|wöchig|monatig|jährig)\w*)",
        re.IGNORECASE,
    ),
    "time": re.compile(
        rf"\b(?:(?:um|gegen|ab|bis)\s+)?\d{{1,2}}[.:]\d{{2}}\s*Uhr(?:\s+\w+zeit)?"
        rf"|\b(?:(?:am|vom|seit|bis|ab)\s+)?(?:\d{{1,2}}\.\s*{_MONTHS}(?:\s+\d{{4}})?|\d{{1,2}}\.\d{{1,2}}\.\d{{2,4}})"
        rf"|\b(?:(?:im|seit|bis|ab|Anfang|Ende|Mitte)\s+)?{_MONTHS}(?:\s+\d{{4}})?"
        rf"|\b(?:(?:am|vom|seit|bis|ab)\s+)?{_WEEKDAYS}"
        rf"|\b(?:(?:im\s+Jahr(?:e)?|seit|bis|ab|um|von|vor|nach|im)\s+)?(?:1[0-9]{{3}}|20[0-9]{{2}})(?:er)?\b"
        rf"|\b\d{{1,2}}\.\s*Jahrhundert"
        rf"|\b(?:gestern|heute|morgen|vorgestern)(?:abend|morgen|nachmittag)?\b",
        re.IGNORECASE,
    ),
    "number": re.compile(
        rf"\b{_APPROX}(?:\d[\d.,]*\d|\d)(?:\s*(?:Prozent|%|Millionen|Milliarden|Mio\.|Mrd\.|Tausend))?"
        # The counted thing: a noun, perhaps after an adjective ("175.000 russische Soldaten"), or a unit.
        rf"(?:\s+(?:[a-zäöüß][\w-]*\s+)?[A-ZÄÖÜ][\w-]*|\s+(?:km|m|cm|mm|kg|g|t|ha|l|km/h|€|\$)(?!\w))?"
        rf"|\b{_APPROX}(?:zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|zwanzig|dreißig|vierzig|fünfzig|hundert|tausend|zehntausend|hunderttausend)\w*(?:\s+[A-ZÄÖÜ][\w-]*)?",
    ),
    "place": re.compile(
        r"\b(?:in|im|aus|nach|bei|auf|an)\s+(?:der|dem|den|seiner|ihrer|seinem|ihrem)?\s*"
        r"((?:[A-ZÄÖÜ][\w-]+)(?:\s+[A-ZÄÖÜ][\w-]+)*(?:\s+(?:in|im|bei|am|an der)\s+[A-ZÄÖÜ][\w-]+)*)"
    ),
    "entity": re.compile(r"\b[A-ZÄÖÜ][\w.-]*[\wé](?:\s+(?:von|van|de|al|bin)?\s*[A-ZÄÖÜ][\w.-]*[\wé])*"),
}

# Question words → the kind of phrase that answers them.
_QTYPES = [
    (re.compile(r"\bwie\s+lange?\b|\bwie\s+viel\w*\s+(?:Stunden|Minuten|Tage|Wochen|Monate|Jahre)\b|\bwelche(?:r|n)?\s+Dauer\b", re.I), "duration"),
    (re.compile(r"\bum\s+wie\s+viel\s+Uhr\b|\bwann\b|\bwelche[mn]?\s+(?:Jahr|Datum|Tag|Monat|Jahrhundert)\b|\bseit\s+wann\b|\bbis\s+wann\b|\bin\s+welchem\s+Jahr\b", re.I), "time"),
    (re.compile(r"\bwie\s+(?:viele?|hoch|groß|weit|schwer|alt|lang|tief|breit|oft|stark|teuer)\b|\bwieviele?\b|\bwelche[rn]?\s+(?:Anzahl|Zahl|Betrag|Prozentsatz)\b", re.I), "number"),
    (re.compile(r"\bwo(?:her|hin)?\b|\bin\s+welche[mr]?\s+(?:Stadt|Land|Ort|Region|Staat)\b", re.I), "place"),
    (re.compile(r"\bwer\b|\bwe(?:m|n|ssen)\b|\bwelche[rs]?\s+(?:Zeitung|Organisation|Partei|Firma|Unternehmen|Land|Person|Politiker)\b", re.I), "entity"),
]

_STOP_CAPS = {
    "Der", "Die", "Das", "Den", "Dem", "Des", "Ein", "Eine", "Einer", "Es", "Er", "Sie", "Wir", "Ich", "Auch", "Nach",
    "Am", "Im", "In", "Bei", "Mit", "Für", "Auf", "Aus", "Zu", "Vor", "Seit", "Wie", "Was", "Wer", "Wo", "Wann", "Und",
    "Aber", "Doch", "So", "Dabei", "Damit", "Dies", "Diese", "Dieser", "Man", "Als", "Um", "An", "Laut", "Zudem",
}


# Kinds whose phrases are rare enough in running text to look for them beyond the candidate pool.
_SELECTIVE_KINDS = ("duration", "time", "number")


def question_type(question: str) -> str | None:
    for pattern, kind in _QTYPES:
        if pattern.search(question):
            return kind
    return None


def _stems(text: str) -> set[str]:
    from .store import bm25_tokenize

    return set(bm25_tokenize([text])[0])


def find_phrase(sentence: str, kind: str | None, question: str) -> tuple[int, int] | None:
    """The span of the answering phrase of `kind` inside `sentence`, skipping phrases the question
    itself contains (they repeat the question, they don't answer it)."""
    if kind is None:
        return None
    matches = list(PATTERNS[kind].finditer(sentence))
    if not matches:
        return None  # most sentences: skip the stemming below
    q_stems = _stems(question)
    q_lower = question.lower()
    # Where the question's own words occur: the answer is usually close to them.
    anchors = [m.start() for m in re.finditer(r"\w+", sentence) if _stems(m.group()) & q_stems]
    asked = re.search(r"\bwie\s+viele?\s+(\w+)", question, re.I)
    unit = next(iter(_stems(asked.group(1))), None) if asked else None
    best: tuple[int, int] | None = None
    best_score = -1.0
    for m in matches:
        start, end = m.span(1) if kind == "place" else m.span()
        phrase = sentence[start:end].strip(" ,;:")
        if not phrase or phrase.lower() in q_lower:
            continue
        start = sentence.index(phrase, start)
        end = start + len(phrase)
        words = phrase.split()
        if kind == "place":
            # "im Juni in Genf": a month or weekday is not a place.
            lead = re.match(rf"(?:(?:{_MONTHS}|{_WEEKDAYS})\b\s*(?:in|im|bei|am)?\s*)+", phrase, re.IGNORECASE)
            if lead:
                phrase = phrase[lead.end() :]
                start += lead.end()
                end = start + len(phrase)
                if not phrase:
                    continue
        if kind == "entity":
            # German capitalises all nouns: drop words the question uses and sentence-initial fillers.
            kept = [w for w in words if w[0].isupper() and w not in _STOP_CAPS and not (_stems(w) & q_stems)]
            if not kept:
                continue
            first = phrase.index(kept[0])
            start, end = start + first, start + phrase.rindex(kept[-1]) + len(kept[-1])
            score = len(kept) + (1 if len(kept) >= 2 else 0)
        else:
            p_stems = _stems(phrase)
            novel = p_stems - q_stems
            if p_stems and not novel:
                continue
            # Prefer phrases with the unit the question asks for ("Wie viele Kilometer" → "300 Kilometer")
            # and with digits over number words.
            score = 1.0 + len(p_stems & q_stems) + 0.01 * len(phrase) + 0.5 * bool(re.search(r"\d", phrase))
            if unit and unit in p_stems:
                score += 2
        if anchors:
            score -= 0.002 * min(min(abs(a - start), abs(a - end)) for a in anchors)
        if score > best_score:
            best, best_score = (start, end), score
    return best


# ---------------------------------------------------------------- sentence scoring


@dataclass(eq=False)  # candidates are told apart by identity
class _Cand:
    doc_id: str
    start: int  # sentence span in the document
    end: int
    prior: float  # retrieval score of its passage, scaled to [0, 1]
    dense: float = 0.0
    lexical: float = 0.0
    phrase: tuple[int, int] | None = None  # the typed answering phrase, inside the sentence
    score: float = 0.0
    chunk_ids: tuple[int, ...] = field(default=())
    vec: np.ndarray | None = field(default=None, repr=False)  # embedding of the sentence in context

    @property
    def typed(self) -> bool:
        return self.phrase is not None


def _sentence_candidates(
    index: "Index", passages: list[Passage], top: float, seen: set[tuple[str, int]], keep=None, limit: int | None = None
) -> list[_Cand]:
    """The sentences of `passages` not in `seen` (and passing `keep(text)`, at most `limit`)."""
    cands: list[_Cand] = []
    top = top or 1.0
    for p in passages:
        text = index.documents[p.doc_id].text
        for s, e in _doc_sentences(index, p.doc_id):
            if e <= p.start or s >= p.end or (p.doc_id, s) in seen:
                continue
            if keep is not None and not keep(text[s:e]):
                continue
            seen.add((p.doc_id, s))
            cands.append(_Cand(p.doc_id, s, e, prior=p.score / top, chunk_ids=p.chunk_ids))
            if limit is not None and len(cands) >= limit:
                return cands
    return cands


def _doc_sentences(index: "Index", doc_id: str) -> list[tuple[int, int]]:
    cache = index.__dict__.setdefault("_sentence_cache", {})
    if doc_id not in cache:
        from .chunking import split_sentences

        cache[doc_id] = split_sentences(index.documents[doc_id].text)
    return cache[doc_id]


def _score_sentences(index: "Index", question: str, cands: list[_Cand], kind: str | None) -> None:
    cfg = index.config
    texts = [index.documents[c.doc_id].text[c.start : c.end] for c in cands]
    q_stems = _stems(question)
    if cands:
        # A sentence is embedded with the one before it: "Sie dauerten zwei Stunden" needs its subject.
        qv = index.query_vector(question)
        sv = index.sentence_vectors([_with_context(index, c, cfg.sentence_context) for c in cands])
        dense = sv @ qv
        for c, v in zip(cands, sv):
            c.vec = v
    else:
        dense = np.zeros(len(cands))
    for c, text, d in zip(cands, texts, dense):
        c.dense = float(d)
        c.lexical = len(_stems(text) & q_stems) / max(1, len(q_stems))
        c.phrase = find_phrase(text, kind, question)
        c.score = (
            c.dense
            + cfg.lexical_weight * c.lexical
            + cfg.typed_weight * c.typed
            + cfg.prior_weight * c.prior
        )


def _with_context(index: "Index", c: _Cand, before: int) -> str:
    sents = _doc_sentences(index, c.doc_id)
    i = next(j for j, (s, _) in enumerate(sents) if s == c.start)
    start = sents[max(0, i - before)][0]
    return index.documents[c.doc_id].text[start : c.end]


# ---------------------------------------------------------------- quotes


def quote_span(
    index: "Index", doc_id: str, s_start: int, s_end: int, max_chars: int, include: Iterable[tuple[int, int]] = ()
) -> tuple[int, int]:
    """The answering sentence, widened first to the `include` sentences (strong runners-up of the
    same article, in order) that fit, then by whole neighbouring sentences (before first, then
    after) while the quote stays within `max_chars`."""
    sents = _doc_sentences(index, doc_id)
    start, end = s_start, s_end
    for a, b in include:
        if max(end, b) - min(start, a) <= max_chars:
            start, end = min(start, a), max(end, b)
    lo = next(j for j, (s, _) in enumerate(sents) if s == start)
    hi = next(j for j, (_, e) in enumerate(sents) if e == end)
    grew = True
    while grew:
        grew = False
        if lo > 0 and end - sents[lo - 1][0] <= max_chars:
            lo -= 1
            start = sents[lo][0]
            grew = True
        if hi + 1 < len(sents) and sents[hi + 1][1] - start <= max_chars:
            hi += 1
            end = sents[hi][1]
            grew = True
    return start, end


# ---------------------------------------------------------------- agreement

_WORD_NUM = {
    "ein": 1, "eine": 1, "einer": 1, "einem": 1, "einen": 1, "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6,
    "sieben": 7, "acht": 8, "neun": 9, "zehn": 10, "elf": 11, "zwölf": 12, "zwanzig": 20, "dreißig": 30,
    "anderthalb": 1.5, "eineinhalb": 1.5, "zweieinhalb": 2.5, "halbe": 0.5,
}
_UNIT_MIN = {
    "sekund": 1 / 60, "minut": 1, "minüt": 1, "min": 1, "stund": 60, "stünd": 60, "std": 60, "tag": 1440, "täg": 1440,
    "woch": 10080, "wöch": 10080, "monat": 43200, "jahr": 525600, "jähr": 525600,
}


def phrase_value(phrase: str) -> float | None:
    """A comparable number for a duration or quantity phrase (durations in minutes)."""
    low = phrase.lower()
    total = None
    for m in re.finditer(r"(\d+(?:[.,]\d+)*|[a-zäöüß]+?)(?:\s*-?\s*)(stund|stünd|std|minut|minüt|min|sekund|tag|täg|woch|wöch|monat|jahr|jähr)", low):
        raw, unit = m.group(1), m.group(2)
        if raw in _WORD_NUM:
            n = _WORD_NUM[raw]
        elif re.fullmatch(r"\d+(?:[.,]\d+)*", raw):
            n = float(raw.replace(".", "").replace(",", ".")) if "," in raw or raw.count(".") > 1 or re.search(r"\.\d{3}$", raw) else float(raw)
        else:
            continue
        total = (total or 0) + n * _UNIT_MIN[unit]
    if total is not None:
        return total
    m = re.search(r"\d[\d.,]*", low)
    if m:
        raw = m.group().rstrip(".,")
        try:
            return float(raw.replace(".", "").replace(",", "."))
        except ValueError:
            return None
    return None


# Words around an answer that do not change what it says ("am Dienstag" = "Dienstag").
_FRAME_WORDS = re.compile(
    r"^(?:(?:am|um|im|in|an|ab|bis|seit|vom|von|gegen|rund|etwa|gut|knapp|fast|über|mehr als|weniger als|"
    r"nahezu|ca\.|circa|ungefähr|bis zu|mindestens|höchstens|insgesamt|nur|genau|beinahe|der|die|das|dem|den)\s+)+",
    re.IGNORECASE,
)


def _norm_phrase(phrase: str) -> str:
    return re.sub(r"\W+", " ", _FRAME_WORDS.sub("", phrase.strip()).lower()).strip()


# Kinds whose phrases compare by value; dates and names compare by their words.
_VALUED_KINDS = ("duration", "number")
_MAGNITUDES = {"prozent", "millionen", "milliarden", "mio", "mrd", "tausend"}


def _number_unit(phrase: str) -> str | None:
    """The counted noun of a number phrase ("120.000 Soldaten" → "soldat"), if any."""
    words = [w for w in re.findall(r"[^\W\d_]+", phrase.lower()) if w not in _MAGNITUDES]
    if not words or not re.search(r"\d", phrase):
        return None
    return next(iter(_stems(words[-1])), None)


def _time_shape(phrase: str) -> str:
    """Clock time, weekday, day, month or year: only dates of one shape can contradict each other."""
    low = phrase.lower()
    if "uhr" in low:
        return "clock"
    if re.search(_WEEKDAYS, phrase, re.IGNORECASE):
        return "weekday"
    if re.search(r"\d{1,2}\.\s*(?:" + _MONTHS + r"|\d)", phrase, re.IGNORECASE):
        return "day"
    if re.search(_MONTHS, phrase, re.IGNORECASE):
        return "month"
    return "year" if re.search(r"\d{3,4}", phrase) else "other"


def _values_agree(values: list[float]) -> bool:
    # "rund zwei Stunden" and "zwei Stunden und fünf Minuten" agree: within 10 %.
    return max(values) <= min(values) * 1.1 + 1e-9


def comparable(a: str, b: str, kind: str | None) -> bool:
    """Whether two answering phrases answer in the same terms, so that a difference is a
    contradiction: 300 Kilometer and 175.000 Soldaten are not, nor are "2018" and "am Dienstag";
    different names are more often a wrong pick than a contradiction."""
    if kind == "number":
        ua, ub = _number_unit(a), _number_unit(b)
        return ua is None or ub is None or ua == ub
    if kind == "time":
        return _time_shape(a) == _time_shape(b)
    if kind in ("place", "entity"):
        return _norm_phrase(a) == _norm_phrase(b)
    return True


def same_answer(a: str, b: str, kind: str | None = "number") -> bool:
    """Whether two answering phrases say the same thing."""
    if not comparable(a, b, kind):
        return False
    va, vb = (phrase_value(a), phrase_value(b)) if kind in _VALUED_KINDS else (None, None)
    if va is not None and vb is not None:
        return _values_agree([va, vb])
    return _norm_phrase(a) == _norm_phrase(b)


def agreement_of(phrases: list[tuple[str, str]], kind: str | None = "number") -> Agreement | None:
    """The first phrase (the best answer) with the others that say the same, and those that say
    otherwise in comparable terms; None unless at least two articles take part."""
    if not phrases:
        return None
    first = phrases[0][1]
    same = [phrases[0]] + [p for p in phrases[1:] if same_answer(first, p[1], kind)]
    differing = [p for p in phrases[1:] if p not in same and comparable(first, p[1], kind)]
    if len(same) + len(differing) < 2:
        return None
    return Agreement(phrases=same, differing=differing)


def corroborating(index: "Index", question: str, cands: list[_Cand], kind: str | None) -> list[tuple[_Cand, str]]:
    """The typed answer of the best candidate and, per other article, the sentence that says the
    same, as (candidate, phrase), best first.

    Reports of one event repeat its facts, so an agreeing sentence of another article counts even
    somewhat below the best score (`corroboration_margin`). Of an article's agreeing sentences the one
    closest in meaning to the best one is taken: it is about the same event, where another sentence
    with the same figure may be about an earlier one ("das Treffen in Genf dauerte fast zwei Stunden")."""
    cfg = index.config
    if kind is None or not cands:
        return []
    window = [c for c in cands[: 4 * cfg.answer_pool] if c.typed]

    def phrase(c: _Cand) -> str:
        start = c.start + c.phrase[0]
        return index.documents[c.doc_id].text[start : start + c.phrase[1] - c.phrase[0]]

    # The anchor: the best typed sentence, if it is nearly as good as the best sentence overall.
    anchor = window[0] if window else None
    if anchor is None or anchor.score < cands[0].score - cfg.agreement_margin:
        return []
    a_phrase = phrase(anchor)
    members: dict[str, tuple[float, _Cand, str]] = {}
    for c in window:
        if c.doc_id == anchor.doc_id or c.score < anchor.score - cfg.corroboration_margin:
            continue
        p = phrase(c)
        if not same_answer(a_phrase, p, kind):
            continue
        sim = float(c.vec @ anchor.vec) if c.vec is not None and anchor.vec is not None else c.score
        if c.doc_id not in members or sim > members[c.doc_id][0]:
            members[c.doc_id] = (sim, c, p)
    return [(anchor, a_phrase)] + [(c, p) for _, c, p in sorted(members.values(), key=lambda m: -m[1].score)]


# ---------------------------------------------------------------- the answer


def answer(
    index: "Index",
    question: str,
    k: int = 3,
    mode: str | None = None,
    doc_ids: Iterable[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> Answer:
    cfg = index.config
    mode = mode or cfg.retriever
    q = clean_question(question, cfg.max_question_chars)
    allowed = _allowed(index, doc_ids, date_from, date_to)
    ranked = rank_chunks(index, q, mode=mode, allowed=allowed)
    merged = merge_spans(index, ranked)
    pool = merged[: cfg.answer_pool]
    if not pool:
        return Answer(question=q, passages=[], abstained=True, confidence=0.0, message=ABSTAIN_MESSAGE)

    kind = question_type(q)
    top = max(p.score for p in pool)
    seen: set[tuple[str, int]] = set()
    cands = _sentence_candidates(index, pool, top, seen)
    if kind in _SELECTIVE_KINDS and cfg.typed_extra:
        # A duration or date mentioned in passing ("bei dem gut zweistündigen Gespräch") sits in a
        # chunk about something else and ranks low: sentences of the asked type from further down
        # the candidates are scored too.
        cands += _sentence_candidates(
            index, merged[cfg.answer_pool :], top, seen,
            keep=lambda t: find_phrase(t, kind, q) is not None, limit=cfg.typed_extra,
        )
    # The mode chooses how candidate passages are found; quotes are always ranked by the same
    # sentence scorer, so abstention means the same thing in every mode.
    _score_sentences(index, q, cands, kind)
    cands.sort(key=lambda c: -c.score)
    best = cands[0]
    # The evidence for abstention is measured apart from the ranking weights, so tuning the
    # ranking does not move the calibrated threshold.
    confidence = max((c.dense + cfg.evidence_lexical_weight * c.lexical for c in cands), default=0.0)
    abstained = confidence < cfg.abstain_threshold

    # Articles that say the same as the best answer are quoted first, so the user sees the agreement.
    group = corroborating(index, q, cands, kind)[:k] if not abstained else []
    first = [c for c, _ in group]
    ordered = [best] + [c for c in first if c is not best] + [c for c in cands[: 4 * k] if c is not best and c not in first]

    # One quote per answering sentence, diversified across articles.
    quotes: list[Passage] = []
    fixed = 0
    for c in ordered:
        runners_up = [(o.start, o.end) for o in cands if o.doc_id == c.doc_id and o is not c and o.score >= c.score - cfg.cover_margin]
        qs, qe = quote_span(index, c.doc_id, c.start, c.end, cfg.max_quote_chars, runners_up)
        if any(p.doc_id == c.doc_id and qs < p.end and qe > p.start for p in quotes):
            continue
        p = make_passage(index, c.doc_id, qs, qe, c.score, c.chunk_ids)
        off = c.start - qs
        p.highlight = (off, c.end - qs)
        # The whole sentence stays highlighted (measured: narrowing alone misses more often);
        # a typed phrase inside it is marked on top.
        if c.phrase and cfg.typed_highlight:
            p.phrase = (off + c.phrase[0], off + c.phrase[1])
        quotes.append(p)
        fixed += c is best or c in first
    # Sentence scores lie close together, so a further quote from an already quoted article pays
    # a fixed amount rather than a share of its score.
    passages = diversify(quotes[fixed:], k, penalty=1.0, subtract=cfg.answer_diversity, chosen=quotes[:fixed])

    agreement = None
    if group:
        # The best answer, the articles that corroborate it, then strong quotes of further articles
        # (agreement_of keeps those that contradict it in comparable terms).
        pairs = [(c.doc_id, p) for c, p in group]
        grouped = {d for d, _ in pairs}
        for p in passages:
            if p.phrase and p.doc_id not in grouped and p.score >= best.score - cfg.agreement_margin:
                pairs.append((p.doc_id, p.answer_text))
                grouped.add(p.doc_id)
        agreement = agreement_of(pairs, kind)

    message = ABSTAIN_MESSAGE if abstained else passages[0].answer_text
    return Answer(question=q, passages=[] if abstained else passages, abstained=abstained, confidence=confidence, agreement=agreement, message=message)
