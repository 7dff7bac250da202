"""The persisted index: FAISS vectors + SQLite chunk table + German BM25, one folder per version.

Layout of an index folder::

    CURRENT              name of the active version folder (replaced atomically)
    v-<time>-<rand>/     manifest.json, chunks.sqlite, faiss.index, bm25/
    embcache.sqlite      embeddings by (model fingerprint, chunk-text hash), shared by versions
    .lock                held by the one build that may write

A build writes a complete new version into a temporary folder, renames it, then swaps CURRENT.
A build killed at any moment therefore leaves the previous version untouched and loadable.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .chunking import Chunk, chunk_document
from .config import Config
from .corpus import CorpusLoad, Document, iter_corpus
from .errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, RagError
from .progress import Progress
from .tables import ChunkStore, ChunkTable, DocumentTable, LRUCache, TableWriter
from .text import bm25_tokenize, split_sentences
from .vectors import FLAT, IVF, VectorIndex

FORMAT_VERSION = 2  # 2: documents' chunk ids in the table, not the manifest; vector index type
# Bump when chunk_document's behaviour changes, so old indexes are rebuilt.
CHUNKER_VERSION = 1
EMBED_BATCH = 32  # small enough that a question waiting for the shared model waits briefly
# Memoised per loaded index, least recently used forgotten first:
QUERY_CACHE = 256  # query vectors
SENTENCE_CACHE = 20_000  # sentence vectors (~30 MB at 384 dims)
SPAN_CACHE = 5_000  # documents' sentence spans
DERIVED_CACHE = 1_000  # other per-question results (conversation topics)
# Opening an index hashes files up to this size whole; larger ones (vectors, tables of big
# archives) by SAMPLE_BLOCKS blocks, so opening stays fast at any size (the build hashes everything).
VERIFY_FULL_BYTES = 64 << 20
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK = 64 << 10
KEEP_VERSIONS = 2  # the current one and its predecessor (a reader may still be opening it)


@dataclass
class BuildSummary:
    articles: int = 0
    chunks: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    skipped: int = 0
    embedded: int = 0  # chunks sent to the model (cache misses)
    seconds: float = 0.0
    full_rebuild: bool = False
    reason: str = ""
    wrote: bool = False  # False when nothing changed and the old version was kept
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"{self.articles} Artikel, {self.chunks} Abschnitte · neu {self.new}, geändert {self.changed}, "
            f"entfernt {self.removed}, Duplikate {self.duplicates}, übersprungen {self.skipped} · "
            f"{self.embedded} Abschnitte eingebettet · {self.seconds:.1f} s"
        )
        if self.full_rebuild:
            text += f" · vollständiger Neuaufbau ({self.reason})"
        elif not self.wrote:
            text += " · keine Änderung"
        return text


# ---------------------------------------------------------------- helpers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
        _fsync_dir(d)


_VERSION_NAME = re.compile(r"v-[0-9A-Za-z_-]{1,100}")


def _current_version(root: Path) -> Path | None:
    try:
        name = (root / "CURRENT").read_bytes()[:1000].decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise IndexCorruptError(f"Index unter {root} ist nicht lesbar ({e.strerror or e}). Bitte `rag build` ausführen.") from e
    except UnicodeDecodeError:
        name = ""
    if not _VERSION_NAME.fullmatch(name):
        raise IndexCorruptError(f"Index unter {root} ist beschädigt (CURRENT). Bitte `rag build` ausführen.")
    return root / name


@contextlib.contextmanager
def build_lock(root: Path, timeout: float | None = None):
    """Serialise writers of one index folder; readers never wait."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as f:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise IndexLockedError(f"Ein anderer Aufbau läuft gerade für {root}.") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class EmbeddingCache:
    """Vectors keyed by (model fingerprint, chunk-text hash); additive, so a crash loses nothing."""

    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, timeout=30)
        # WAL without a sync per batch: a crash may lose the last batches (they are embedded
        # again), never the file; a million-chunk build commits tens of thousands of batches.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS emb (fp TEXT, h TEXT, vec BLOB, PRIMARY KEY (fp, h))")

    def get(self, fingerprint: str, hashes: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), 500):
            part = list(hashes[i : i + 500])
            rows = self.db.execute(
                f"SELECT h, vec FROM emb WHERE fp = ? AND h IN ({','.join('?' * len(part))})",
                [fingerprint, *part],
            )
            for h, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[h] = vec
        return found

    def put(self, fingerprint: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [(fingerprint, h, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for h, v in zip(hashes, vectors)],
            )

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------- the loaded index


class Index:
    """A loaded, immutable index version: documents, chunks, vectors, BM25 and memoised derived
    data (query and sentence vectors, sentence spans). Thread-safe for reading; everything but FAISS
    lives in memory. Retrieval (rag.retrieval) and answering (rag.answering) are functions of it."""

    def __init__(
        self, root: Path, version_dir: Path, manifest: dict, config: Config, embedder=None, last_build: BuildSummary | None = None
    ):
        self.root = root
        self.version_dir = version_dir
        self.manifest = manifest
        self.config = config
        self._embedder = embedder
        self.last_build = last_build
        self._query_vectors = LRUCache(QUERY_CACHE)
        self._sentence_vectors = LRUCache(SENTENCE_CACHE)
        self._sentence_spans = LRUCache(SPAN_CACHE)
        self._derived = LRUCache(DERIVED_CACHE)
        self._load_tables()
        self._load_vectors()
        self._load_bm25()

    # -- loading: nothing here reads all documents or chunks (rag.tables reads them on demand)
    def _broken(self, part: str) -> IndexCorruptError:
        return IndexCorruptError(f"Index unter {self.root} ist beschädigt ({part}). Bitte `rag build` ausführen.")

    def _load_tables(self) -> None:
        counts = self.manifest["counts"]
        try:
            self._store = ChunkStore(self.version_dir / "chunks.sqlite", counts["documents"], counts["chunks"])
            self._store.rows('SELECT id, doc_id, start, "end" FROM chunks LIMIT 1')
            self._store.rows("SELECT id, text, content_hash FROM documents LIMIT 1")
        except sqlite3.DatabaseError as e:
            raise self._broken(f"Tabelle: {e}") from e
        self.documents: DocumentTable = self._store.documents
        self.chunks: ChunkTable = self._store.chunks

    def _load_vectors(self) -> None:
        try:
            self.vector_index = VectorIndex.read(
                self.version_dir / "faiss.index", self.manifest["vector_index"], mmap=self.config.ann_mmap
            )
        except RuntimeError as e:
            raise self._broken("FAISS") from e
        if self.vector_index.ntotal != len(self.chunks) or self.vector_index.dim != self.manifest["model"]["dim"]:
            raise self._broken("Vektoranzahl")

    @property
    def faiss(self):
        """The FAISS index itself (rag.vectors.VectorIndex holds it with its manifest parameters)."""
        return self.vector_index.faiss

    def _load_bm25(self) -> None:
        import bm25s

        bm25_dir = self.version_dir / "bm25"
        ids_file = bm25_dir / "chunk_ids.npy"
        self.bm25_ids = np.load(ids_file, mmap_mode="r") if ids_file.exists() else np.zeros(0, np.int64)
        self.bm25 = None
        if len(self.bm25_ids):
            try:
                # Memory-mapped: the score matrix stays on disk until a question's words touch it.
                self.bm25 = bm25s.BM25.load(str(bm25_dir), mmap=True, show_progress=False)
            except Exception as e:  # bm25s raises assorted errors on damaged files
                raise self._broken("BM25") from e

    def with_config(self, config: Config) -> "Index":
        """The same loaded version answering with other answer settings (reader, scorer, weights);
        tables, vectors and caches are shared. Model and chunking settings stay the index's."""
        twin = copy.copy(self)
        twin.config = _config_from_manifest(self.manifest, config)
        return twin

    # -- model
    @property
    def embedder(self):
        if self._embedder is None:
            from .embedding import load_embedder

            self._embedder = load_embedder(self.config)
            if self._embedder.fingerprint != self.manifest["model"]["fingerprint"]:
                raise IndexCorruptError(
                    f"Index unter {self.root} wurde mit einem anderen Modell gebaut. Bitte `rag build` ausführen."
                )
        return self._embedder

    # -- low-level search (used by retrieval)
    def query_vector(self, query: str) -> np.ndarray:
        """The query embedding, memoised: retrieval and answer ranking both need it."""
        vec = self._query_vectors.get(query)
        if vec is None:
            vec = self.embedder.embed_queries([query])[0].astype(np.float32)
            self._query_vectors.put(query, vec)
        return vec

    def sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Passage embeddings of answer-candidate sentences, memoised: the same passages come up
        for related questions, and embedding them is most of an answer's time."""
        known = {t: v for t in set(texts) if (v := self._sentence_vectors.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            # Isolated: a sentence's vector must not depend on which question first brought it up.
            vecs = self.embedder.embed_passages(missing, isolated=True)
            for t, v in zip(missing, vecs):
                known[t] = v
                self._sentence_vectors.put(t, v)
        return np.stack([known[t] for t in texts])

    def sentences(self, doc_id: str) -> list[tuple[int, int]]:
        """The sentence spans of a document (rag.text.split_sentences), memoised."""
        spans = self._sentence_spans.get(doc_id)
        if spans is None:
            spans = split_sentences(self.documents[doc_id].text)
            self._sentence_spans.put(doc_id, spans)
        return spans

    def chunks_of(self, doc_id: str) -> list[int]:
        """The chunk ids of a document, in text order."""
        return self._store.chunks_of(doc_id)

    def chunk_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        """(chunk id, start, end) of a document's chunks, in text order."""
        return self._store.doc_spans(doc_id)

    def chunk_texts(self) -> Iterable[tuple[int, str]]:
        """(chunk id, text) of every chunk in id order, read a page at a time."""
        return self._store.iter_chunk_texts()

    def close(self) -> None:
        """Close the chunk table (the index cannot be read afterwards; for tools that open many)."""
        self._store.close()

    def recall(self, key):
        """What `remember` kept under `key` for this version (None: nothing, or forgotten)."""
        return self._derived.get(key)

    def remember(self, key, value) -> None:
        """Keep a derived result for this version (bounded, least recently used dropped first;
        e.g. what a chat's previous answer was about)."""
        self._derived.put(key, value)

    def _caches(self) -> dict[str, LRUCache]:
        return {
            "queries": self._query_vectors, "sentence_vectors": self._sentence_vectors, "sentence_spans": self._sentence_spans,
            "derived": self._derived, **self._store.caches(),
        }

    def cache_sizes(self) -> dict[str, int]:
        """Entries held by each memo: query vectors, sentence vectors, documents' sentence spans,
        derived results (what each chat's last answer was about), and the documents and chunk spans
        read from the chunk table."""
        return {name: len(cache) for name, cache in self._caches().items()}

    def clear_caches(self, which: Iterable[str] | None = None) -> None:
        """Forget memoised data, all of it or the memos named in `which` (names as in cache_sizes),
        e.g. so that measured latencies include embedding the question."""
        caches = self._caches()
        for name in caches if which is None else which:
            caches[name].clear()

    def dense_search(self, query: str, n: int) -> list[tuple[int, float]]:
        if not len(self.chunks):
            return []
        scores, ids = self.vector_index.search(self.query_vector(query)[None, :], min(n, len(self.chunks)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def bm25_search(self, query: str, n: int) -> list[tuple[int, float]]:
        if self.bm25 is None:
            return []
        tokens = bm25_tokenize([query])
        if not tokens[0]:
            return []
        # Unknown query words would make bm25s fail; keep only words of the index vocabulary.
        vocab = self.bm25.vocab_dict
        known = [[t for t in tokens[0] if t in vocab]]
        if not known[0]:
            return []
        scores = self.bm25.get_scores(known[0])
        # The top n among the chunks that contain a query word: bm25s's own top-k partitions all
        # scores, mostly zeros, which numpy partitions slowly (≈ 150 ms at a million chunks).
        rows = np.flatnonzero(scores > 0)
        if len(rows) > n:
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        rows = rows[np.lexsort((rows, -scores[rows]))]  # best first; ties in index order
        return [(int(self.bm25_ids[r]), float(scores[r])) for r in rows]

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        return self.vector_index.vectors(chunk_ids)

    # -- new versions
    def upsert(self, documents: Iterable[Document], progress: Progress | None = None) -> "Index":
        """Add or replace documents; returns the new index version (this object stays valid)."""
        given = {d.id: d for d in documents}

        def merged():
            for doc in self.documents.stream():
                yield given.pop(doc.id, doc)
            yield from given.values()

        with build_lock(self.root):  # serialised with builds like any other writer
            return _write_version(self.root, merged(), self.config, self._embedder, None, progress)

    def delete(self, doc_ids: Iterable[str]) -> "Index":
        gone = set(doc_ids)
        docs = (d for d in self.documents.stream() if d.id not in gone)
        with build_lock(self.root):
            return _write_version(self.root, docs, self.config, self._embedder, None, None)

    def __len__(self) -> int:
        return len(self.documents)


# ---------------------------------------------------------------- loading


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 over the manifest without its own `checksum` field (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return "sha256:" + text_hash(json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def _manifest_ok(m: dict) -> bool:
    """The fields loading and incremental builds rely on, with the right types."""
    try:
        model, cfg, files, counts, vec = m["model"], m["config"], m["files"], m["counts"], m["vector_index"]
        return (
            isinstance(model["name"], str) and isinstance(model["fingerprint"], str)
            and type(model["dim"]) is int and model["dim"] > 0
            and all(isinstance(cfg[k], str) for k in ("model", "query_prompt", "passage_prompt"))
            and all(type(cfg[k]) is int for k in ("chunk_size", "chunk_overlap"))
            and type(m["next_chunk_id"]) is int
            and all(type(counts[k]) is int and counts[k] >= 0 for k in ("documents", "chunks"))
            and isinstance(files, dict) and bool(files)
            and all(type(f["size"]) is int and isinstance(f["sha256"], str) for f in files.values())
            and vec["type"] in (FLAT, IVF)
            and (vec["type"] == FLAT or all(type(vec[k]) is int and vec[k] > 0 for k in ("nlist", "nprobe")))
        )
    except (KeyError, TypeError, AttributeError):
        return False


def _read_manifest(root: Path, version_dir: Path) -> dict:
    broken = f"Index unter {root} ist beschädigt (manifest.json). Bitte `rag build` ausführen."
    try:
        manifest = json.loads((version_dir / "manifest.json").read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"Index unter {root} ist unvollständig (manifest.json fehlt). Bitte `rag build` ausführen.") from None
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8 (a ValueError), not JSON
        raise IndexCorruptError(broken) from None
    if not isinstance(manifest, dict):
        raise IndexCorruptError(broken)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptError(
            f"Index unter {root} hat Format {str(manifest.get('format_version'))[:20]}, erwartet {FORMAT_VERSION}. "
            "Bitte `rag build` ausführen."
        )
    # Manifests written before the checksum existed have none; every newer one must match it.
    if "checksum" in manifest and manifest["checksum"] != manifest_checksum(manifest):
        raise IndexCorruptError(broken)
    if not _manifest_ok(manifest):
        raise IndexCorruptError(broken)
    return manifest


def _sample_sha256(path: Path, size: int) -> str:
    """SHA-256 over SAMPLE_BLOCKS blocks spread evenly over a file (and its last block): catches
    truncation, swapped files and damaged regions of large files without reading gigabytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for i in range(SAMPLE_BLOCKS + 1):
            f.seek(min(size - 1, i * size // SAMPLE_BLOCKS) if size else 0)
            h.update(f.read(SAMPLE_BLOCK))
    return h.hexdigest()


def file_record(path: Path) -> dict:
    """A version file's manifest entry: size and SHA-256, and for large files a sampled SHA-256
    that opening the index checks instead of reading the whole file."""
    size = path.stat().st_size
    record = {"size": size, "sha256": _sha256_file(path)}
    if size > VERIFY_FULL_BYTES:
        record["sample_sha256"] = _sample_sha256(path, size)
    return record


def _verify_files(root: Path, version_dir: Path, manifest: dict) -> None:
    for rel, meta in manifest.get("files", {}).items():
        p = version_dir / rel
        try:
            size = p.stat().st_size if p.is_file() else -1
            if size != meta["size"]:
                ok = False
            elif size > VERIFY_FULL_BYTES and isinstance(meta.get("sample_sha256"), str):
                ok = _sample_sha256(p, size) == meta["sample_sha256"]
            else:
                ok = _sha256_file(p) == meta["sha256"]
        except OSError:
            ok = False
        if not ok:
            raise IndexCorruptError(f"Index unter {root} ist beschädigt ({rel[:100]}). Bitte `rag build` ausführen.")


def _config_from_manifest(manifest: dict, config: Config | None) -> Config:
    """Model and chunking come from the index; retrieval settings from the caller."""
    base = config or Config()
    stored = manifest["config"]
    return base.replace(
        model=stored["model"],
        query_prompt=stored["query_prompt"],
        passage_prompt=stored["passage_prompt"],
        chunk_size=stored["chunk_size"],
        chunk_overlap=stored["chunk_overlap"],
    )


def load_index(path: str | Path, config: Config | None = None, embedder=None, verify_model: bool = True) -> Index:
    root = Path(path)
    version_dir = _current_version(root)
    if version_dir is None:
        raise IndexNotFoundError(f"Kein Index unter {root}. Bitte zuerst `rag build` ausführen.")
    manifest = _read_manifest(root, version_dir)
    _verify_files(root, version_dir, manifest)
    cfg = _config_from_manifest(manifest, config)
    if not verify_model:
        return Index(root, version_dir, manifest, cfg, embedder)
    if embedder is not None and embedder.fingerprint != manifest["model"]["fingerprint"]:
        raise IndexCorruptError(f"Index unter {root} wurde mit einem anderen Modell gebaut. Bitte `rag build` ausführen.")
    if embedder is None:
        from .embedding import model_fingerprint

        if model_fingerprint(cfg) != manifest["model"]["fingerprint"]:
            raise IndexCorruptError(
                f"Index unter {root} wurde mit einem anderen Modell gebaut ({manifest['model']['name']}). Bitte `rag build` ausführen."
            )
    return Index(root, version_dir, manifest, cfg, embedder)


def _try_load(root: Path, config: Config, embedder) -> tuple[Index | None, str]:
    """The previous version for an incremental build, or None with the reason for a full one.
    Its model is not checked here: the build compares fingerprints itself."""
    try:
        return load_index(root, config, embedder, verify_model=False), ""
    except IndexNotFoundError:
        return None, "neuer Index"
    except RagError as e:
        return None, f"alter Index unbrauchbar: {e}"


# ---------------------------------------------------------------- building


def build_index(
    corpus: str | Path,
    path: str | Path,
    config: Config | None = None,
    embedder=None,
    progress: Progress | None = None,
    lock_timeout: float | None = None,
    ray_address: str | None = None,
) -> Index:
    """Bring the index at `path` up to date with the corpus (a folder, or one JSONL or CSV file of
    any size, read as a stream); returns the loaded index.

    Only new and changed articles are embedded: on this machine, or with `ray_address` ("local",
    "auto" or "host:port", as `ray.init` takes it) by workers of a Ray cluster. The summary is at
    `index.last_build`.
    """
    root = Path(path)
    config = config or Config()
    started = time.perf_counter()
    with build_lock(root, lock_timeout):
        _clean_stale(root)
        load = CorpusLoad()
        documents = iter_corpus(corpus, load)
        index = _write_version(root, documents, config, embedder, load, progress, ray_address or config.ray_address)
    index.last_build.seconds = time.perf_counter() - started
    return index


def _fingerprint(config: Config, embedder) -> str:
    if embedder is not None:
        return embedder.fingerprint
    from .embedding import model_fingerprint

    return model_fingerprint(config)


def index_settings(config: Config) -> dict:
    """The settings that shape an index's content: another value means a full rebuild."""
    return {
        "model": config.model,
        "query_prompt": config.query_prompt,
        "passage_prompt": config.passage_prompt,
        "chunk_size": config.chunk_size,
        "chunk_overlap": config.chunk_overlap,
        "chunker_version": CHUNKER_VERSION,
    }


def _write_version(
    root: Path,
    documents: Iterable[Document],
    config: Config,
    embedder,
    load: CorpusLoad | None,
    progress: Progress | None,
    ray_address: str | None = None,
) -> Index:
    """Write a new version from `documents` (consumed once, as a stream: their text goes straight
    into the new chunk table) and switch to it; unchanged articles keep their chunks and vectors."""
    started = time.perf_counter()
    report = progress or (lambda frac, msg: None)
    summary = BuildSummary()
    fingerprint = _fingerprint(config, embedder)

    prev, reason = _try_load(root, config, embedder)
    if prev is not None:
        stored = prev.manifest["config"]
        if prev.manifest["model"]["fingerprint"] != fingerprint or stored["model"] != config.model:
            prev, reason = None, "anderes Modell"
        elif stored != index_settings(config):
            prev, reason = None, "andere Einstellungen"
    summary.full_rebuild = prev is None and reason != "neuer Index"
    summary.reason = reason

    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        # Chunk ids: unchanged articles keep theirs, everything else gets fresh ones.
        next_id = prev.manifest["next_chunk_id"] if prev else 0
        tables = TableWriter(tmp / "chunks.sqlite")
        kept: list[int] = []  # chunk ids whose vectors stay in the vector index
        new_chunks: dict[int, Chunk] = {}
        bm25_ids: list[int] = []
        terms = BM25Terms()
        seen: set[str] = set()
        report(0.02, "Artikel zerlegen")
        for doc in documents:
            if doc.id in seen:  # a stream may repeat an id; the corpus loader already renamed its own
                summary.skipped += 1
                continue
            seen.add(doc.id)
            old_hash = prev.documents.content_hash(doc.id) if prev else None
            if old_hash == doc.content_hash:
                rows = prev.chunk_spans(doc.id)
                kept.extend(r[0] for r in rows)
                summary.unchanged += 1
            else:
                rows = []
                for ch in chunk_document(doc, config.chunk_size, config.chunk_overlap):
                    new_chunks[next_id] = ch
                    rows.append((next_id, ch.start, ch.end))
                    next_id += 1
                if old_hash is None:
                    summary.new += 1
                else:
                    summary.changed += 1
            tables.add(doc, rows)
            for cid, start, end in rows:
                bm25_ids.append(cid)
                terms.add(doc.text[start:end])
        tables.close()
        if load is not None:
            summary.duplicates += len(load.duplicates)
            summary.skipped += len(load.skipped)
            summary.warnings = list(load.warnings)
        summary.articles = len(seen)
        summary.removed = len(prev.documents) - summary.unchanged - summary.changed if prev else 0

        if prev is not None and not summary.new and not summary.changed and not summary.removed:
            summary.chunks = len(prev.chunks)
            summary.seconds = time.perf_counter() - started
            prev.last_build = summary  # prev was loaded for this build alone: no one else holds it yet
            report(1.0, "Keine Änderung")
            return prev

        vectors: dict[int, np.ndarray] = {}
        embedder = _embed_missing(root, new_chunks, vectors, config, embedder, fingerprint, summary, report, ray_address)
        if vectors:
            dim = len(next(iter(vectors.values())))
        elif prev is not None:
            dim = prev.manifest["model"]["dim"]
        else:  # an empty corpus: the dimension still has to come from the model
            if embedder is None:
                from .embedding import load_embedder

                embedder = load_embedder(config)
            dim = embedder.dim

        report(0.92, "Index schreiben")
        new_ids = np.fromiter(new_chunks, dtype=np.int64, count=len(new_chunks))
        new_vecs = np.stack([vectors[int(c)] for c in new_ids]) if len(new_ids) else np.zeros((0, dim), np.float32)
        vector_index = _update_vectors(prev, kept, new_ids, new_vecs, dim, config)
        vector_index.write(tmp / "faiss.index")
        del new_vecs, vectors, new_chunks
        _write_bm25(tmp / "bm25", np.asarray(bm25_ids, dtype=np.int64), terms)
        del terms
        _write_manifest(tmp, config, fingerprint, dim, next_id, tables, vector_index)
        _fsync_tree(tmp)
        version_dir = root / f"v-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        os.rename(tmp, version_dir)
        _fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when it became the version
    _switch_current(root, version_dir)
    _clean_old_versions(root)

    manifest = _read_manifest(root, version_dir)
    summary.chunks = tables.chunks
    summary.wrote = True
    summary.seconds = time.perf_counter() - started
    report(1.0, "Fertig")
    return Index(root, version_dir, manifest, config, embedder, last_build=summary)


def _update_vectors(
    prev: Index | None, kept: list[int], new_ids: np.ndarray, new_vecs: np.ndarray, dim: int, config: Config
) -> VectorIndex:
    """The new version's vector index. With a previous version: its index minus the chunks that
    are gone, plus the new ones (an IVF index keeps its trained cells); rebuilt only when an exact
    index grows past `config.ann_threshold`."""
    if prev is None:
        return VectorIndex.build(new_ids, new_vecs, dim, config)
    total = len(kept) + len(new_ids)
    if prev.vector_index.params["type"] == FLAT and total >= config.ann_threshold:
        ids = np.concatenate([np.asarray(kept, dtype=np.int64), new_ids])
        vecs = np.concatenate([prev.vectors(kept), new_vecs]) if kept else new_vecs
        return VectorIndex.build(ids, vecs, dim, config)
    index = VectorIndex.read(prev.version_dir / "faiss.index", prev.vector_index.params, writable=True)
    keep = set(kept)
    index.remove([cid for cid in prev.chunks if cid not in keep])
    index.add(new_ids, new_vecs)
    index.set_probes(config)
    return index


def _embed_missing(root, chunks, vectors, config, embedder, fingerprint, summary, report, ray_address=None):
    """Fill `vectors` for chunks that lack one: from the cache, else from the model (on Ray with
    `ray_address`). Returns the embedder."""
    todo = [cid for cid in chunks if cid not in vectors]
    if not todo:
        return embedder
    ray = None
    cache = EmbeddingCache(root / "embcache.sqlite")
    try:
        hashes = {cid: text_hash(chunks[cid].text) for cid in todo}
        dim = None
        if embedder is not None:
            dim = embedder.dim
        # The dimension is only known once a vector exists; probe the cache with any stored one.
        cached = cache.get(fingerprint, list(set(hashes.values())), dim) if dim else {}
        if dim is None:
            row = cache.db.execute("SELECT vec FROM emb WHERE fp = ? LIMIT 1", [fingerprint]).fetchone()
            if row:
                dim = len(row[0]) // 4
                cached = cache.get(fingerprint, list(set(hashes.values())), dim)
        misses = [cid for cid in todo if hashes[cid] not in cached]
        for cid in todo:
            if hashes[cid] in cached:
                vectors[cid] = cached[hashes[cid]]
        if misses:
            # Unique texts only: identical paragraphs in several articles are embedded once.
            unique = list(dict.fromkeys(hashes[c] for c in misses))
            text_of = {hashes[c]: chunks[c].text for c in misses}
            if ray_address:  # Ray and its actors start in the background while the batches are made
                from .distributed import RayEmbedding

                ray = RayEmbedding(config, ray_address, workers=-(-len(unique) // EMBED_BATCH))
            if embedder is None:
                from .embedding import load_embedder

                embedder = load_embedder(config)
            # Longest first (in tokens) over the whole build, so each batch holds texts of like
            # length and little padding is computed. Measured on 300 articles: document order cost
            # ~25 % over one raw encode, character order still ~25 %, token order ~1 %.
            lengths = getattr(embedder, "passage_lengths", None)
            sizes = dict(zip(unique, lengths([text_of[h] for h in unique]) if lengths else (len(text_of[h]) for h in unique)))
            unique.sort(key=lambda h: -sizes[h])
            batches = [unique[i : i + EMBED_BATCH] for i in range(0, len(unique), EMBED_BATCH)]
            texts = [[text_of[h] for h in part] for part in batches]
            if ray is not None:
                results = ray.embed(texts, fingerprint)
            else:
                results = ((i, embedder.embed_passages(part)) for i, part in enumerate(texts))
            done: dict[str, np.ndarray] = {}
            for i, vecs in results:
                cache.put(fingerprint, batches[i], vecs)
                done.update(zip(batches[i], vecs))
                report(0.1 + 0.8 * min(1.0, len(done) / len(unique)), f"Einbetten {len(done)}/{len(unique)}")
            for cid in misses:
                vectors[cid] = done[hashes[cid]]
            summary.embedded = len(misses)
    finally:
        cache.close()
        if ray is not None:
            ray.close()
    return embedder


class BM25Terms:
    """Chunk texts → BM25 term ids, tokenised a batch at a time as the build streams through the
    corpus: a million chunks' terms kept as strings would take gigabytes, as shared int ids a
    fraction of that."""

    BATCH = 5_000

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.ids: list[list[int]] = []
        self._pending: list[str] = []

    def add(self, text: str) -> None:
        self._pending.append(text)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        vocab = self.vocab
        for words in bm25_tokenize(self._pending):
            self.ids.append([vocab.setdefault(w, len(vocab)) for w in words])
        self._pending = []

    def corpus(self) -> tuple[list[list[int]], dict[str, int]]:
        self._flush()
        return self.ids, self.vocab


def _write_bm25(folder: Path, ids: np.ndarray, terms: BM25Terms) -> None:
    """bm25s over the chunks' terms; row i of its matrix is chunk ids[i]."""
    folder.mkdir()
    np.save(folder / "chunk_ids.npy", ids)
    if len(ids):
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(terms.corpus(), show_progress=False)
        retriever.save(str(folder), show_progress=False)


def _write_manifest(
    tmp: Path, config: Config, fingerprint: str, dim: int, next_id: int, tables: TableWriter, vector_index: VectorIndex
) -> None:
    files = {str(p.relative_to(tmp)): file_record(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": config.model, "fingerprint": fingerprint, "dim": dim},
        "config": index_settings(config),
        "counts": {"documents": tables.documents, "chunks": tables.chunks},
        "next_chunk_id": next_id,
        "vector_index": vector_index.params,
        "files": files,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")


def _switch_current(root: Path, version_dir: Path) -> None:
    tmp = root / f".CURRENT.{uuid.uuid4().hex}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(version_dir.name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / "CURRENT")
    _fsync_dir(root)


def _clean_stale(root: Path) -> None:
    """Remove what killed builds left behind (only called under the build lock)."""
    for p in root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".CURRENT.*"):
        p.unlink(missing_ok=True)
    try:
        _clean_old_versions(root)
    except RagError:  # an unreadable CURRENT: the build replaces it and cleans up afterwards
        pass


def _created(p: Path) -> int:
    """The creation time in a version folder's name (v-<time_ns>-<rand>); -1 for other names."""
    part = p.name.split("-")[1]
    return int(part) if part.isdigit() else -1


def _clean_old_versions(root: Path) -> None:
    """Keep the current version and its predecessor (a reader may still be opening it); remove
    older ones and versions newer than the current one, which killed builds renamed but never
    switched to (only called under the build lock, so no build is writing one)."""
    current = _current_version(root)
    if current is None or not current.is_dir():
        return
    versions = sorted((p for p in root.glob("v-*") if p.is_dir()), key=_created)
    older = [p for p in versions if p != current and _created(p) < _created(current)]
    keep = {current, *older[len(older) - (KEEP_VERSIONS - 1) :]} if KEEP_VERSIONS > 1 else {current}
    for p in versions:
        if p not in keep:
            shutil.rmtree(p, ignore_errors=True)
