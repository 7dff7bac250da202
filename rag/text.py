"""German text analysis, in one place: sentence ends and sentence spans (quotes, highlights,
titles, chunk boundaries), stemming and BM25 terms (search, word overlap, answer phrases).

Nothing here knows about documents or indexes; every function takes plain strings.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Sequence

__all__ = ["ABBREVIATIONS", "CLOSERS", "SENTENCE_END", "split_sentences", "bm25_tokenize", "stems"]


# --- German sentence ends ---------------------------------------------------------------------

# Abbreviations after which a period does not end a sentence (without the period). Single letters
# ("z. B.", "u. a.", "d. h.", initials) and 1–3 digit ordinals ("7. Dezember") are handled generally.
ABBREVIATIONS = (
    "Dr Prof Nr Nrn St Hr Hrn Fr Frl bzw ca usw etc Mio Mrd Tsd Mill Jan Feb Febr Mär Apr Jun Jul "
    "Aug Sep Sept Okt Nov Dez Jh Jhd Jhs vgl ggf evtl inkl exkl bzgl zzgl ggü gegr geb gest gem sog "
    "Abs Abt Str Tel Hrsg Bd Bde Kap Co Inc Ltd Corp Mr Mrs vs Ing Dipl Mag Gebr Std mind zB zT uvm "
    "usf bspw insb insbes Lt Oblt Hptm Kpt Stv stv Vors Präs Pfr Rep Sen Abg Bez Ldkr Mitgl Verf Anm "
    "Pkt Ziff lfd Nachf Abb Fa Wg ehem jun sen Sr Jr ebd ff vorm nachm"
).split()


def _lookbehinds() -> str:
    words = set(ABBREVIATIONS)
    words |= {w[0].upper() + w[1:] for w in ABBREVIATIONS if w[0].islower()}
    by_len: dict[int, list[str]] = {}
    for w in sorted(words):
        by_len.setdefault(len(w), []).append(re.escape(w))
    # `re` lookbehinds need a fixed width: one lookbehind per abbreviation length.
    parts = [rf"(?<!\b(?:{'|'.join(ws)}))" for _, ws in sorted(by_len.items())]
    parts.append(r"(?<!\b\w)")  # single letters/digits: "z. B.", "u. a.", "J. Biden", "7. Dez."
    parts.append(r"(?<!\b\d\d)(?<!\b\d\d\d)")  # ordinals: "24. Februar", "100. Geburtstag"
    return "".join(parts)


CLOSERS = "\"'“”‘’»«)\\]"
# A sentence end: ".", "!" or "?" (a period not after an abbreviation/ordinal), optional closing
# quotes/brackets, then whitespace. No capturing groups: langchain wraps separators in one.
SENTENCE_END = rf"(?:{_lookbehinds()}\.|[!?])[{CLOSERS}]*\s+"

_SENTENCE_END_RE = re.compile(SENTENCE_END)
_PARAGRAPH_RE = re.compile(r"\n[ \t\r\f\v]*\n")


# --- sentences --------------------------------------------------------------------------------

_PYSBD_MAX_CHARS = 20_000  # pysbd is superlinear; longer paragraphs use the regex splitter


def _pysbd_starts(text: str) -> list[int] | None:
    """Sentence starts found by pysbd, aligned to `text`; None when pysbd fails or alters the text."""
    try:
        import pysbd

        segments = pysbd.Segmenter(language="de", clean=False, char_span=False).segment(text)
    except Exception:  # noqa: BLE001 - any pysbd failure → regex fallback
        return None
    starts, cursor = [], 0
    for seg in segments:
        seg = seg.strip()
        if not seg:
            continue
        i = text.find(seg, cursor)
        if i < 0:  # pysbd changed the text: cannot align
            return None
        starts.append(i)
        cursor = i + len(seg)
    return starts


def _regex_starts(text: str) -> list[int]:
    return [m.end() for m in _SENTENCE_END_RE.finditer(text)]


def _sentence_starts(text: str) -> list[int]:
    """Sentence starts, paragraph by paragraph (paragraph breaks always end a sentence)."""
    breaks = [m.end() for m in _PARAGRAPH_RE.finditer(text)]
    starts: list[int] = []
    for a, b in zip([0, *breaks], [*breaks, len(text)]):
        para = text[a:b]
        if not para.strip():
            continue
        found = _pysbd_starts(para) if len(para) <= _PYSBD_MAX_CHARS else None
        if found is None:
            found = _regex_starts(para)
        starts.append(a)
        starts.extend(a + i for i in found)
    return starts


def split_sentences(text: str) -> list[tuple[int, int]]:
    """German sentence spans (start, end) over `text`.

    Spans are in order, non-overlapping, never empty, start and end on non-whitespace, and together
    cover every non-whitespace character. Abbreviations ("z. B.", "Dr.") and numbers ("18.15 Uhr",
    "7. Dezember") stay inside their sentence; paragraph breaks always end a sentence.
    """
    if not text.strip():
        return []
    bounds = sorted({0, len(text), *_sentence_starts(text)})
    spans: list[tuple[int, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        seg = text[a:b]
        stripped = seg.strip()
        if not stripped:
            continue
        s = a + len(seg) - len(seg.lstrip())
        spans.append((s, s + len(stripped)))
    # Fragments without a letter or digit (a closing quote, a lone dash) join the sentence before
    # them, or the one after when they come first.
    merged: list[tuple[int, int]] = []
    pending_start: int | None = None
    for s, e in spans:
        if not any(ch.isalnum() for ch in text[s:e]):
            if merged:
                merged[-1] = (merged[-1][0], e)
            elif pending_start is None:
                pending_start = s
            continue
        if pending_start is not None:
            s, pending_start = pending_start, None
        merged.append((s, e))
    if pending_start is not None:  # nothing alphanumeric at all
        merged.append((pending_start, spans[-1][1]))
    return merged


# --- stems and BM25 terms ---------------------------------------------------------------------


@functools.cache
def _stemmer():
    import Stemmer

    # bm25s sets its logger to DEBUG, which floods the terminal once logging is configured.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return Stemmer.Stemmer("german")


def bm25_tokenize(texts: Sequence[str]) -> list[list[str]]:
    """German BM25 terms: lower-cased words, German stop words removed, Snowball-stemmed."""
    import bm25s

    stemmer = _stemmer()
    return bm25s.tokenize(list(texts), stopwords="de", stemmer=stemmer.stemWords, return_ids=False, show_progress=False)


def stems(text: str) -> set[str]:
    """The BM25 terms of one text as a set: what word overlap and phrase matching compare."""
    return set(bm25_tokenize([text])[0])
