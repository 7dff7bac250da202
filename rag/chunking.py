"""Document → Chunk: overlapping passages with exact character offsets into the document text.

Splitting is langchain-text-splitters' RecursiveCharacterTextSplitter with German-aware regex
separators (paragraphs, lines, sentence ends that are not abbreviations or ordinals, `;`/`:`,
commas, spaces, characters). The splitter only yields strings, so the merge step is mirrored here
to record where every chunk lies: `doc.text[c.start:c.end] == c.text` holds for every chunk.

Sentence ends and sentence spans come from `rag.text`.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .text import CLOSERS, SENTENCE_END, split_sentences  # noqa: F401 - split_sentences re-exported (rag.reader uses it)

if TYPE_CHECKING:
    from .corpus import Document

__all__ = ["Chunk", "chunk_document", "chunk_spans", "SEPARATORS", "split_sentences"]



@dataclass(frozen=True)
class Chunk:
    doc_id: str
    start: int
    end: int
    text: str  # == document.text[start:end], always


SEPARATORS = [
    r"\n\s*\n",  # paragraphs
    r"\n",  # lines
    SENTENCE_END,
    rf"[;:][{CLOSERS}]*\s+",
    r",\s+",
    r"\s+",
    "",
]


# --- chunking ---------------------------------------------------------------------------------


@functools.cache
def _offset_splitter():
    """The splitter class, made on first use: importing langchain costs ≈ 0.35 s, which opening an
    index (which never chunks) should not pay."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # langchain warns about over-long chunks; ours never are (the last separator is "").
    logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)

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

    return _OffsetSplitter


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
    splitter = _offset_splitter()(
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
