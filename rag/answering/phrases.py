"""The answering phrase inside a sentence: German typed-phrase patterns (duration, date/time,
number, place, name), the kind of phrase a question asks for, and the values and shapes that let
two phrases be compared (rag.answering.agreement)."""
from __future__ import annotations

import re

from ..config import Config
from ..text import stems

__all__ = [
    "PATTERNS", "SELECTIVE_KINDS", "VALUED_KINDS", "MONTHS", "WEEKDAYS",
    "question_type", "find_phrase", "phrase_value", "is_share", "number_unit", "time_shape", "normalize_phrase",
    "asks_for_source", "source_phrase",
]

_DEFAULTS = Config()

_NUM_WORDS = (
    r"(?:ein|eine|einer|einem|einen|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|"
    r"zwanzig|dreißig|vierzig|fünfzig|hundert|tausend|anderthalb|eineinhalb|zweieinhalb|halbe[nr]?|\d+(?:[.,]\d+)?)"
)
_APPROX = (
    r"(?:(?:rund|etwa|gut|knapp|fast|fast genau|beinahe|über|mehr als|weniger als|nahezu|ca\.|circa|ungefähr|bis zu|"
    r"mindestens|höchstens|insgesamt|nur|genau)\s+)?"
)
_UNIT_TIME = r"(?:Stunden?|Std\.|Minuten?|Min\.|Sekunden?|Tagen?|Tage|Wochen?|Monaten?|Monate|Jahren?|Jahre|Jahrzehnten?|Jahrhunderten?)"
MONTHS = r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember)"
WEEKDAYS = r"(?:Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag)(?:abend|morgen|nachmittag|vormittag|mittag)?"

PATTERNS = {
    "duration": re.compile(
        rf"\b{_APPROX}(?:{_NUM_WORDS}\s*-?\s*{_UNIT_TIME}(?:\s+und\s+{_NUM_WORDS}\s+{_UNIT_TIME})?"
        rf"|{_NUM_WORDS}(?:stündig|minütig|tägig|wöchig|monatig|jährig)\w*)",
        re.IGNORECASE,
    ),
    "time": re.compile(
        rf"\b(?:(?:um|gegen|ab|bis)\s+)?\d{{1,2}}[.:]\d{{2}}\s*Uhr(?:\s+\w+zeit)?"
        rf"|\b(?:(?:am|vom|seit|bis|ab)\s+)?(?:\d{{1,2}}\.\s*{MONTHS}(?:\s+\d{{4}})?|\d{{1,2}}\.\d{{1,2}}\.\d{{2,4}})"
        rf"|\b(?:(?:im|seit|bis|ab|Anfang|Ende|Mitte)\s+)?{MONTHS}(?:\s+\d{{4}})?"
        rf"|\b(?:(?:am|vom|seit|bis|ab)\s+)?{WEEKDAYS}"
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

# Question words → the kind of phrase that answers them (first match wins).
_QUESTION_WORDS = [
    # "wie lange" asks for a duration; "wie lang" for a length (a number, below).
    ("duration", [r"\bwie\s+lange\b", r"\bwie\s+viel\w*\s+(?:Stunden|Minuten|Tage|Wochen|Monate|Jahre)\b", r"\bwelche(?:r|n)?\s+Dauer\b"]),
    ("time", [
        r"\bum\s+wie\s+viel\s+Uhr\b", r"\bwann\b", r"\bwelche[mn]?\s+(?:Jahr|Datum|Tag|Monat|Jahrhundert)\b",
        r"\bseit\s+wann\b", r"\bbis\s+wann\b", r"\bin\s+welchem\s+Jahr\b",
    ]),
    ("number", [
        r"\bwie\s+(?:viele?|hoch|groß|weit|schwer|alt|lang|tief|breit|oft|stark|teuer)\b", r"\bwieviele?\b",
        r"\bwelche[rn]?\s+(?:Anzahl|Zahl|Betrag|Prozentsatz)\b",
    ]),
    ("place", [r"\bwo(?:her|hin)?\b", r"\bin\s+welche[mr]?\s+(?:Stadt|Land|Ort|Region|Staat)\b"]),
    ("entity", [
        r"\bwer\b", r"\bwe(?:m|n|ssen)\b",
        r"\bwelche[rs]?\s+(?:Zeitung|Organisation|Partei|Firma|Unternehmen|Land|Person|Politiker)\b",
    ]),
]
_QTYPES = [(re.compile("|".join(words), re.I), kind) for kind, words in _QUESTION_WORDS]

# Capitalised words that are not names: German capitalises every noun and every sentence start.
_STOP_CAPS = {
    "Der", "Die", "Das", "Den", "Dem", "Des", "Ein", "Eine", "Einer", "Es", "Er", "Sie", "Wir", "Ich", "Auch", "Nach",
    "Am", "Im", "In", "Bei", "Mit", "Für", "Auf", "Aus", "Zu", "Vor", "Seit", "Wie", "Was", "Wer", "Wo", "Wann", "Und",
    "Aber", "Doch", "So", "Dabei", "Damit", "Dies", "Diese", "Dieser", "Man", "Als", "Um", "An", "Laut", "Zudem",
}

# Kinds whose phrases are rare enough in running text to look for them beyond the candidate pool.
SELECTIVE_KINDS = ("duration", "time", "number")
# Kinds whose phrases compare by value; dates and names compare by their words.
VALUED_KINDS = ("duration", "number")


def question_type(question: str) -> str | None:
    """The kind of phrase that answers `question` (duration, time, number, place, entity), or None."""
    for pattern, kind in _QTYPES:
        if pattern.search(question):
            return kind
    return None


def find_phrase(sentence: str, kind: str | None, question: str, config: Config = _DEFAULTS) -> tuple[int, int] | None:
    """The span of the answering phrase of `kind` inside `sentence`, skipping phrases the question
    itself contains (they repeat the question, they don't answer it)."""
    if kind is None:
        return None
    matches = list(PATTERNS[kind].finditer(sentence))
    if not matches:
        return None  # most sentences: skip the stemming below
    q_stems = stems(question)
    q_lower = question.lower()
    # Where the question's own words occur: the answer is usually close to them.
    anchors = [m.start() for m in re.finditer(r"\w+", sentence) if stems(m.group()) & q_stems]
    asked = re.search(r"\bwie\s+viele?\s+(\w+)", question, re.I)
    unit = next(iter(stems(asked.group(1))), None) if asked else None
    best: tuple[int, int] | None = None
    best_score = -1.0
    for m in matches:
        span = _phrase_span(sentence, m, kind, q_lower)
        if span is None:
            continue
        start, end = span
        score = _phrase_score(sentence[start:end], kind, q_stems, unit, config)
        if score is None:
            continue
        if kind == "entity":
            start, end = _name_span(sentence, start, end, q_stems)
        if anchors:
            score -= config.phrase_distance_weight * min(min(abs(a - start), abs(a - end)) for a in anchors)
        if score > best_score:
            best, best_score = (start, end), score
    return best


def _phrase_span(sentence: str, m: re.Match, kind: str, q_lower: str) -> tuple[int, int] | None:
    """The match trimmed of punctuation (and, for places, of a leading month or weekday); None when
    nothing is left or the question itself says it."""
    start, end = m.span(1) if kind == "place" else m.span()
    phrase = sentence[start:end].strip(" ,;:")
    if not phrase or phrase.lower() in q_lower:
        return None
    start = sentence.index(phrase, start)
    end = start + len(phrase)
    if kind == "place":
        # "im Juni in Genf": a month or weekday is not a place.
        lead = re.match(rf"(?:(?:{MONTHS}|{WEEKDAYS})\b\s*(?:in|im|bei|am)?\s*)+", phrase, re.IGNORECASE)
        if lead:
            start += lead.end()
            if start >= end:
                return None
    return start, end


def _name_words(phrase: str, q_stems: set[str]) -> list[str]:
    # German capitalises all nouns: drop words the question uses and sentence-initial fillers.
    return [w for w in phrase.split() if w[0].isupper() and w not in _STOP_CAPS and not (stems(w) & q_stems)]


def _name_span(sentence: str, start: int, end: int, q_stems: set[str]) -> tuple[int, int]:
    """A name match narrowed to its first and last kept word."""
    phrase = sentence[start:end]
    kept = _name_words(phrase, q_stems)
    return start + phrase.index(kept[0]), start + phrase.rindex(kept[-1]) + len(kept[-1])


def _phrase_score(phrase: str, kind: str, q_stems: set[str], unit: str | None, config: Config) -> float | None:
    """How well a phrase answers, before its distance to the question's words; None: not an answer."""
    if kind == "entity":
        kept = _name_words(phrase, q_stems)
        if not kept:
            return None
        return len(kept) + (config.phrase_full_name_bonus if len(kept) >= 2 else 0)
    p_stems = stems(phrase)
    if p_stems and not p_stems - q_stems:
        return None  # only the question's own words
    # Prefer phrases with the unit the question asks for ("Wie viele Kilometer" → "300 Kilometer")
    # and with digits over number words.
    has_digit = bool(re.search(r"\d", phrase))
    score = 1.0 + len(p_stems & q_stems) + config.phrase_length_weight * len(phrase) + config.phrase_digit_bonus * has_digit
    if unit and unit in p_stems:
        score += config.phrase_unit_bonus
    return score


# ---------------------------------------------------------------- comparing phrases

_WORD_NUM = {
    "ein": 1, "eine": 1, "einer": 1, "einem": 1, "einen": 1, "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6,
    "sieben": 7, "acht": 8, "neun": 9, "zehn": 10, "elf": 11, "zwölf": 12, "zwanzig": 20, "dreißig": 30,
    "anderthalb": 1.5, "eineinhalb": 1.5, "zweieinhalb": 2.5, "halbe": 0.5,
}
_UNIT_MIN = {
    "sekund": 1 / 60, "minut": 1, "minüt": 1, "min": 1, "stund": 60, "stünd": 60, "std": 60, "tag": 1440, "täg": 1440,
    "woch": 10080, "wöch": 10080, "monat": 43200, "jahr": 525600, "jähr": 525600,
}
_DURATION = re.compile(
    r"(\d+(?:[.,]\d+)*|[a-zäöüß]+?)(?:\s*-?\s*)(stund|stünd|std|minut|minüt|min|sekund|tag|täg|woch|wöch|monat|jahr|jähr)"
)
_MAGNITUDES = {"prozent", "millionen", "milliarden", "mio", "mrd", "tausend"}
_SCALE = re.compile(r"\d[\d.,]*\s*(millionen|milliarden|mio\b|mrd\b|tausend)")
_FACTOR = {"tausend": 1e3, "millionen": 1e6, "mio": 1e6, "milliarden": 1e9, "mrd": 1e9}


def _number(raw: str) -> float:
    """A German-written number: "1.000" and "2,5" (a single "." before three digits groups thousands)."""
    if "," in raw or raw.count(".") > 1 or re.search(r"\.\d{3}$", raw):
        return float(raw.replace(".", "").replace(",", "."))
    return float(raw)


def complete_value(sentence: str, span: tuple[int, int]) -> tuple[int, int]:
    """`span` (offsets in `sentence`) widened to the longest duration or amount phrase it overlaps:
    a value cut short says something else ("fünf Minuten" of "zwei Stunden und fünf Minuten")."""
    best = span
    for kind in ("duration", "number"):
        for m in PATTERNS[kind].finditer(sentence):
            a, b = m.span()
            while b > a and sentence[b - 1] in " ,;:":
                b -= 1
            if a < span[1] and span[0] < b and b - a > best[1] - best[0]:
                best = (a, b)
    return (min(span[0], best[0]), max(span[1], best[1]))


def phrase_value(phrase: str) -> float | None:
    """A comparable number for a duration or quantity phrase (durations in minutes, amounts with
    their magnitude: "3 Millionen" → 3e6)."""
    low = phrase.lower()
    total = None
    for m in _DURATION.finditer(low):
        raw, unit = m.group(1), m.group(2)
        if raw in _WORD_NUM:
            n = _WORD_NUM[raw]
        elif re.fullmatch(r"\d+(?:[.,]\d+)*", raw):
            n = _number(raw)
        else:
            continue
        total = (total or 0) + n * _UNIT_MIN[unit]
    if total is not None:
        return total
    m = re.search(r"\d[\d.,]*", low)
    if m:
        raw = m.group().rstrip(".,")
        try:
            value = float(raw.replace(".", "").replace(",", "."))
        except ValueError:
            return None
        scale = _SCALE.match(low, m.start())  # "3 Millionen" is not 3
        return value * _FACTOR[scale.group(1)] if scale else value
    return None


def is_share(phrase: str) -> bool:
    """Whether a number phrase gives a share (Prozent, %) rather than an amount."""
    return bool(re.search(r"prozent|%", phrase, re.IGNORECASE))


def number_unit(phrase: str) -> str | None:
    """The counted noun of a number phrase ("120.000 Soldaten" → "soldat"), if any."""
    words = [w for w in re.findall(r"[^\W\d_]+", phrase.lower()) if w not in _MAGNITUDES]
    if not words or not re.search(r"\d", phrase):
        return None
    return next(iter(stems(words[-1])), None)


def time_shape(phrase: str) -> str:
    """Clock time, weekday, day, month or year: only dates of one shape can contradict each other."""
    low = phrase.lower()
    if "uhr" in low:
        return "clock"
    if re.search(WEEKDAYS, phrase, re.IGNORECASE):
        return "weekday"
    if re.search(r"\d{1,2}\.\s*(?:" + MONTHS + r"|\d)", phrase, re.IGNORECASE):
        return "day"
    if re.search(MONTHS, phrase, re.IGNORECASE):
        return "month"
    return "year" if re.search(r"\d{3,4}", phrase) else "other"


# Words around an answer that do not change what it says ("am Dienstag" = "Dienstag").
_FRAME_WORDS = re.compile(
    r"^(?:(?:am|um|im|in|an|ab|bis|seit|vom|von|gegen|rund|etwa|gut|knapp|fast|über|mehr als|weniger als|"
    r"nahezu|ca\.|circa|ungefähr|bis zu|mindestens|höchstens|insgesamt|nur|genau|beinahe|der|die|das|dem|den)\s+)+",
    re.IGNORECASE,
)


def normalize_phrase(phrase: str) -> str:
    """The words that carry the answer, lower-cased ("am Dienstag" → "dienstag")."""
    return re.sub(r"\W+", " ", _FRAME_WORDS.sub("", phrase.strip()).lower()).strip()


# ---------------------------------------------------------------- sources of a statement

# „Wer hat das gemeldet?“, „Wer sagte das?“, „Laut wem …?“: the question asks who a statement comes
# from, which news German names in a reporting clause („…, wie russische Nachrichtenagenturen
# meldeten“, „teilte das Weiße Haus mit“, „laut Polizei“) rather than as the sentence's subject.
_REPORTED = r"(?:ge)?(?:meld|bericht|sag|bestätig|erklär|beton|verkünd)(?:t|te|ten|et|ete|eten)\b|mitgeteilt\b"
_WHO_REPORTED = re.compile(rf"\bwer\b[^?]*\b(?:{_REPORTED}|teilte?n?\b[^?]*\bmit\b)", re.I)
# What was reported is a statement — „das“, „dies“, a clause after a comma — not a thing („Wer hat
# seinen Rücktritt erklärt?“ asks who resigned).
_STATEMENT = re.compile(r"\b(?:das|dies|dieses|diese|es)\b|,", re.I)
_ASKS_SOURCE = re.compile(r"\blaut\s+wem\b|\bwelche\s+Quelle\b|\bwoher\s+stamm", re.I)
_REPORTING_VERB = r"(?:meldete|berichtete|mitteilte|sagte|erklärte|bestätigte|betonte|verkündete|schrieb)n?"
_SOURCE_LEADS = [
    re.compile(rf"\bwie\s+(?=[^,.;:!?]*?\b{_REPORTING_VERB}\b)"),  # „…, wie die Polizei am Montag mitteilte“
    re.compile(rf"\b(?:{_REPORTING_VERB}|teilten?)\s+(?=\S)"),  # „…, sagte der US-Präsident“, „teilte das Weiße Haus mit“
    re.compile(r"\b(?:laut|nach\s+Angaben\s+(?:von\s+)?|unter\s+Berufung\s+auf\s+)", re.I),  # „laut Polizei“
]
# Words that end a source's name: prepositions, times, conjunctions, verbs of the clause.
_SOURCE_END = {
    "am", "an", "im", "in", "bei", "mit", "nach", "vor", "auf", "zur", "zum", "über", "unter", "gegenüber", "und", "dass",
    "es", "er", "sie", "sei", "seien", "nicht", "auch", "noch", "bereits", "zuvor", "heute", "gestern", "zudem", "demnach",
    "jedoch", "aber", "von", "vom", "bis", "seit", "so", "nun", "dazu", "wie",
}
# „Wer sagte das Spiel ab?“: a separable verb's particle makes „sagte“ another verb.
_PARTICLE_END = re.compile(r"\b(?:ab|zu|an|auf|aus|vor|ein|um)\s*\?*\s*$", re.I)


def asks_for_source(question: str) -> bool:
    """Whether the question asks who a statement comes from („Wer hat das gemeldet?“)."""
    if _ASKS_SOURCE.search(question):
        return True
    return bool(_WHO_REPORTED.search(question) and _STATEMENT.search(question)) and not _PARTICLE_END.search(question)


def source_phrase(sentence: str) -> tuple[int, int] | None:
    """Who the sentence says its statement comes from — the name in its reporting clause
    („wie russische Nachrichtenagenturen am Dienstagabend meldeten“ → „russische
    Nachrichtenagenturen“) — or None. The name runs from the clause's lead to the first word that
    cannot be part of it (a preposition, a time, punctuation) and holds a capitalised word."""
    for lead in _SOURCE_LEADS:
        for m in lead.finditer(sentence):
            span = _source_name(sentence, m.end())
            if span is not None:
                return span
    return None


def _source_name(sentence: str, start: int) -> tuple[int, int] | None:
    words = []
    for w in re.finditer(r"[\w.'’-]+|[^\w\s]", sentence[start:]):
        token = w.group()
        word = token.rstrip(".")
        named = any(sentence[a].isupper() for a, _ in words)
        if (
            not word or not word[0].isalnum() or word.lower() in _SOURCE_END or len(words) == 6
            or re.fullmatch(_REPORTING_VERB, word) or (named and not word[0].isupper())
        ):  # after its noun, a lowercase word („wurden“) is the clause going on
            break
        words.append((start + w.start(), start + w.start() + len(word)))
        if token != word:  # a full stop ends the sentence (a name's abbreviation keeps it inside the word)
            break
    # The name ends at its last capitalised word („das Weiße Haus“); one without any is no name.
    while words and not sentence[words[-1][0]].isupper():
        words.pop()
    if not words:
        return None
    return words[0][0], words[-1][1]
