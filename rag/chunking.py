"""Document → Chunk: overlapping passages with exact character offsets into the document text.

Splitting is langchain-text-splitters' RecursiveCharacterTextSplitter with German-aware regex
separators (paragraphs, lines, sentence ends that are not abbreviations or ordinals, `;`/`:`,
commas, spaces, characters). The splitter only yields strings, so the merge step is mirrored here
to record where every chunk lies: `doc.text[c.start:c.end] == c.text` holds for every chunk.

`split_sentences` gives German sentence spans (pysbd, aligned to the text; regex fallback) for
quotes and highlights.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

if TYPE_CHECKING:  # corpus imports this module lazily (titles); avoid a cycle at import time
    from .corpus import Document

__all__ = ["Chunk", "chunk_document", "split_sentences", "ABBREVIATIONS", "SENTENCE_END"]

# langchain warns about over-long chunks; ours never are (the last separator is "").
logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    start: int
    end: int
    text: str  # == document.text[start:end], always


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


_CLOSERS = "\"'“”‘’»«)\\]"
# A sentence end: ".", "!" or "?" (a period not after an abbreviation/ordinal), optional closing
# quotes/brackets, then whitespace. No capturing groups: langchain wraps separators in one.
SENTENCE_END = rf"(?:{_lookbehinds()}\.|[!?])[{_CLOSERS}]*\s+"

SEPARATORS = [
    r"\n\s*\n",  # paragraphs
    r"\n",  # lines
    SENTENCE_END,
    rf"[;:][{_CLOSERS}]*\s+",
    r",\s+",
    r"\s+",
    "",
]

_SENTENCE_END_RE = re.compile(SENTENCE_END)
_PARAGRAPH_RE = re.compile(r"\n[ \t\r\f\v]*\n")


# --- chunking ---------------------------------------------------------------------------------


class _OffsetSplitter(RecursiveCharacterTextSplitter):
    """RecursiveCharacterTextSplitter that records the (start, end) of every chunk it emits.

    With keep_separator="end" the splits reaching `_merge_splits` are consecutive pieces of the
    text, in text order, whose concatenation is the text; a cursor therefore knows each piece's
    offset. The merge below is langchain's algorithm (separator "" since separators are kept).
    """

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text = text
        self._cursor = 0
        self.spans: list[tuple[int, int]] = []

    def _merge_splits(self, splits: Iterable[str], separator: str) -> list[str]:
        splits = list(splits)
        offsets = []
        for s in splits:
            offsets.append(self._cursor)
            self._cursor += len(s)
        size, overlap, length = self._chunk_size, self._chunk_overlap, self._length_function
        sep_len = length(separator)
        docs: list[str] = []

        def emit(idx: list[int]) -> None:
            start = offsets[idx[0]]
            end = offsets[idx[-1]] + len(splits[idx[-1]])
            text = separator.join(splits[i] for i in idx)
            if self._strip_whitespace:
                lead = len(text) - len(text.lstrip())
                text = text.strip()
                start += lead
                end = start + len(text)
            if text:
                docs.append(text)
                self.spans.append((start, end))

        current: list[int] = []
        total = 0
        for i, d in enumerate(splits):
            len_ = length(d)
            if total + len_ + (sep_len if current else 0) > size:
                if current:
                    emit(current)
                    while total > overlap or (total + len_ + (sep_len if current else 0) > size and total > 0):
                        total -= length(splits[current[0]]) + (sep_len if len(current) > 1 else 0)
                        current = current[1:]
            current.append(i)
            total += len_ + (sep_len if len(current) > 1 else 0)
        if current:
            emit(current)
        return docs


def _find_offsets(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Fallback: locate chunk strings in order (used only if the recorded spans disagree)."""
    spans, pos = [], 0
    for p in pieces:
        i = text.find(p, pos)
        if i < 0:
            i = text.find(p)
        if i < 0:
            continue
        spans.append((i, i + len(p)))
        pos = i + 1
    return spans


def chunk_spans(text: str, chunk_size: int = 600, chunk_overlap: int = 120) -> list[tuple[int, int]]:
    """(start, end) of each chunk of `text`: non-empty, stripped, starts and ends strictly increasing."""
    if not text.strip():
        return []
    if chunk_size < 2:
        raise ValueError(f"chunk_size muss mindestens 2 sein, nicht {chunk_size}")
    splitter = _OffsetSplitter(
        text,
        separators=SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        chunk_size=chunk_size,
        chunk_overlap=min(chunk_overlap, chunk_size - 1),
        strip_whitespace=True,
    )
    pieces = splitter.split_text(text)
    spans = splitter.spans
    if len(spans) != len(pieces) or any(text[s:e] != p for (s, e), p in zip(spans, pieces)):
        spans = _find_offsets(text, pieces)  # pragma: no cover - only if langchain changes internals
    # Drop spans contained in another (possible when a popped piece was whitespace only).
    out: list[tuple[int, int]] = []
    for s, e in sorted(set(spans), key=lambda se: (se[0], -se[1])):
        if e <= s:
            continue
        if out and e <= out[-1][1]:
            continue
        out.append((s, e))
    return out


def chunk_document(doc: "Document", chunk_size: int = 600, chunk_overlap: int = 120) -> list[Chunk]:
    """Overlapping chunks of at most `chunk_size` characters, cut at paragraph/sentence ends where possible."""
    return [Chunk(doc.id, s, e, doc.text[s:e]) for s, e in chunk_spans(doc.text, chunk_size, chunk_overlap)]


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
