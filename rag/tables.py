"""The chunk table of an index version: documents and chunk spans in SQLite, read on demand.

A loaded index keeps neither all documents nor all chunks in memory: each lookup is one indexed
SQLite read, and the last few thousand documents and chunks stay in a bounded cache. So opening an
index costs the same at 10³ and at 10⁶ articles (apart from the vector index), and memory stays
bounded while serving. A version's file is never changed after it is written, so it is opened
read-only and `immutable` (SQLite then skips locking).
"""
from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .chunking import Chunk
from .corpus import Document

DOC_CACHE = 2_000  # documents (≈ 2.5 KB of text each)
CHUNK_CACHE = 20_000  # chunk spans
ID_BATCH = 500  # ids per SQL "IN (…)" lookup

SCHEMA = (
    "CREATE TABLE documents (id TEXT PRIMARY KEY, text TEXT, title TEXT, date TEXT, source TEXT, url TEXT, content_hash TEXT)",
    'CREATE TABLE chunks (id INTEGER PRIMARY KEY, doc_id TEXT, start INTEGER, "end" INTEGER)',
)
# Created after the rows are in: building the index once is faster than keeping it up to date.
DOC_INDEX = "CREATE INDEX chunks_by_doc ON chunks (doc_id, start)"

_DOC_COLUMNS = "id, text, title, date, source, url, content_hash"


def _row_document(row: tuple) -> Document:
    """A Document from the columns _DOC_COLUMNS, in their order."""
    return Document(id=row[0], text=row[1], title=row[2], date=row[3], source=row[4], url=row[5], content_hash=row[6])


class TableWriter:
    """Writes a new version's chunk table row by row (documents stream through; nothing is held)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=OFF")  # a half-written version is thrown away, never repaired
        self.db.execute("PRAGMA synchronous=OFF")  # the finished file is fsynced before the swap
        for statement in SCHEMA:
            self.db.execute(statement)
        self.documents = 0
        self.chunks = 0

    def add(self, doc: Document, chunks: Iterable[tuple[int, int, int]]) -> None:
        """One document and its chunks as (chunk id, start, end)."""
        self.db.execute(
            f"INSERT INTO documents ({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc.id, doc.text, doc.title, doc.date, doc.source, doc.url, doc.content_hash),
        )
        rows = [(cid, doc.id, s, e) for cid, s, e in chunks]
        self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?)", rows)
        self.documents += 1
        self.chunks += len(rows)

    def close(self) -> None:
        self.db.execute(DOC_INDEX)
        self.db.commit()
        self.db.close()


class LRUCache:
    """A bounded mapping, safe across threads, that forgets the least recently used entry first."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class ChunkStore:
    """Read access to one version's chunks.sqlite, safe across threads (one connection, one lock:
    a lookup takes microseconds, far less than the rest of a question)."""

    def __init__(self, path: Path, documents: int, chunks: int):
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self.lock = threading.Lock()
        self.n_documents = documents
        self.n_chunks = chunks
        self._docs = LRUCache(DOC_CACHE)
        self._chunks = LRUCache(CHUNK_CACHE)
        self.documents = DocumentTable(self)
        self.chunks = ChunkTable(self)

    def caches(self) -> dict[str, LRUCache]:
        return {"documents": self._docs, "chunk_spans": self._chunks}

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def document(self, doc_id: str) -> Document | None:
        with self.lock:
            doc = self._docs.get(doc_id)
            if doc is None:
                row = self.db.execute(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    return None
                doc = _row_document(row)
                self._docs.put(doc_id, doc)
            return doc

    def spans(self, chunk_ids: Iterable[int]) -> dict[int, tuple[str, int, int]]:
        """(doc id, start, end) of each known chunk id."""
        found: dict[int, tuple[str, int, int]] = {}
        with self.lock:
            missing = []
            for cid in chunk_ids:
                span = self._chunks.get(cid)
                if span is None:
                    missing.append(int(cid))
                else:
                    found[cid] = span
            for i in range(0, len(missing), ID_BATCH):
                part = missing[i : i + ID_BATCH]
                sql = f'SELECT id, doc_id, start, "end" FROM chunks WHERE id IN ({",".join("?" * len(part))})'
                for cid, doc_id, start, end in self.db.execute(sql, part):
                    found[cid] = (doc_id, start, end)
                    self._chunks.put(cid, (doc_id, start, end))
        return found

    def chunk(self, cid: int) -> Chunk | None:
        span = self.spans([cid]).get(cid)
        if span is None:
            return None
        doc = self.document(span[0])
        return Chunk(doc_id=span[0], start=span[1], end=span[2], text=doc.text[span[1] : span[2]])

    def doc_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        """(chunk id, start, end) of a document's chunks, in text order."""
        return self.rows('SELECT id, start, "end" FROM chunks WHERE doc_id = ? ORDER BY start', (doc_id,))

    def chunks_of(self, doc_id: str) -> list[int]:
        return [r[0] for r in self.doc_spans(doc_id)]

    def content_hash(self, doc_id: str) -> str | None:
        row = self.rows("SELECT content_hash FROM documents WHERE id = ?", (doc_id,))
        return row[0][0] if row else None

    def chunk_counts(self) -> dict[str, int]:
        return dict(self.rows("SELECT doc_id, COUNT(*) FROM chunks GROUP BY doc_id"))

    def _pages(self, sql: str, page: int) -> Iterator[tuple]:
        """The rows of `sql` (its first column the key it is ordered by, "> ?" and "LIMIT ?" its
        two parameters), a page at a time: the lock is held per page, so other threads' lookups go
        on meanwhile, and no cursor stays open across pages."""
        last = -1
        while True:
            rows = self.rows(sql, (last, page))
            if not rows:
                return
            last = rows[-1][0]
            yield from rows

    def document_ids(self) -> Iterator[str]:
        """All document ids in the order they were written."""
        return (r[1] for r in self._pages("SELECT rowid, id FROM documents WHERE rowid > ? ORDER BY rowid LIMIT ?", 10_000))

    def iter_documents(self, page: int = 1000) -> Iterator[Document]:
        """Every document in the order written (for rewriting a version; not through the cache)."""
        sql = f"SELECT rowid, {_DOC_COLUMNS} FROM documents WHERE rowid > ? ORDER BY rowid LIMIT ?"
        for r in self._pages(sql, page):
            yield _row_document(r[1:])

    def iter_chunk_texts(self, page: int = 10_000) -> Iterator[tuple[int, str]]:
        """(chunk id, text) of every chunk in id order (not through the cache)."""
        return self._pages(
            'SELECT c.id, substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c JOIN documents d ON d.id = c.doc_id '
            "WHERE c.id > ? ORDER BY c.id LIMIT ?", page,
        )

    def chunk_ids(self) -> Iterator[int]:
        return (r[0] for r in self._pages("SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT ?", 10_000))

    def close(self) -> None:
        with self.lock:
            self.db.close()


class DocumentTable(Mapping[str, Document]):
    """doc id → Document, read from SQLite when asked (a Mapping, so `in`, `get`, `len` work)."""

    def __init__(self, store: ChunkStore):
        self._store = store

    def __getitem__(self, doc_id: str) -> Document:
        doc = self._store.document(doc_id) if isinstance(doc_id, str) else None
        if doc is None:
            raise KeyError(doc_id)
        return doc

    def __contains__(self, doc_id) -> bool:
        return isinstance(doc_id, str) and self._store.content_hash(doc_id) is not None

    def __len__(self) -> int:
        return self._store.n_documents

    def __iter__(self) -> Iterator[str]:
        return self._store.document_ids()

    def content_hash(self, doc_id: str) -> str | None:
        """The stored content hash, without reading the text."""
        return self._store.content_hash(doc_id)

    def stream(self) -> Iterator[Document]:
        """All documents, read a page at a time (not through the cache)."""
        return self._store.iter_documents()

    def chunk_counts(self) -> dict[str, int]:
        """doc id → number of chunks."""
        return self._store.chunk_counts()


class ChunkTable(Mapping[int, Chunk]):
    """chunk id → Chunk (its text cut from the document), read from SQLite when asked."""

    def __init__(self, store: ChunkStore):
        self._store = store

    def __getitem__(self, cid: int) -> Chunk:
        chunk = self._store.chunk(int(cid))
        if chunk is None:
            raise KeyError(cid)
        return chunk

    def __contains__(self, cid) -> bool:
        return bool(self._store.spans([int(cid)]))

    def __len__(self) -> int:
        return self._store.n_chunks

    def __iter__(self) -> Iterator[int]:
        return self._store.chunk_ids()

    def spans(self, chunk_ids: Iterable[int]) -> dict[int, tuple[str, int, int]]:
        """(doc id, start, end) of each known chunk id, in one lookup."""
        return self._store.spans(chunk_ids)

    def doc_ids(self, chunk_ids: Iterable[int]) -> dict[int, str]:
        """The article of each chunk id, in one lookup (filters test many chunks at once)."""
        return {cid: span[0] for cid, span in self._store.spans(chunk_ids).items()}
