"""The live index of one index folder, and what is asked of it: `RagService`.

`rag.answer` / `rag.retrieve` (one service per index folder, rag.api), the `rag` command and the
web UI all go through it. It loads the index, or builds it from the corpus, on first use; every
question is answered from one index version, even while a rebuild runs; a rebuild, upsert or delete
writes a new version and then swaps the reference, so later questions see it.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .answering import Answer, answer
from .config import Config
from .corpus import Document
from .errors import IndexCorruptError, IndexNotFoundError, RagError
from .progress import Progress
from .retrieval import Filters, Passage, retrieve
from .store import Index, build_index, load_index

__all__ = ["RagService"]

log = logging.getLogger(__name__)


class RagService:
    """Holds the current Index of `index_path`; answers, retrieves, rebuilds from `corpus_path`.

    `repair`: a damaged index is rebuilt on first use instead of raising IndexCorruptError.
    `lock_timeout`: seconds a rebuild waits for another build of the same folder (None: forever)."""

    def __init__(
        self,
        index_path: str | Path,
        corpus_path: str | Path | None = None,
        config: Config | None = None,
        embedder=None,
        *,
        repair: bool = False,
        lock_timeout: float | None = None,
    ):
        self.index_path = Path(index_path)
        self.corpus_path = Path(corpus_path) if corpus_path is not None else None
        self.config = config or Config()
        self.embedder = embedder
        self.repair = repair
        self.lock_timeout = lock_timeout
        self.building = False  # a rebuild is running
        self.updated = time.time()  # when the current version was swapped in
        self._index: Index | None = None
        self._ref_lock = threading.Lock()
        # Held while a new version is written; hold it to change the corpus folder without racing a rebuild.
        self.build_lock = threading.Lock()

    @classmethod
    def of(cls, index: Index, corpus_path: str | Path | None = None) -> "RagService":
        """A service around an index that is already loaded."""
        svc = cls(index.root, corpus_path, index.config)
        svc._index = index
        return svc

    # -- the index
    @property
    def index(self) -> Index:
        """The current version (loaded or built on first use)."""
        return self.open()

    def open(self, progress: Progress | None = None) -> Index:
        """The current version; loads it, or builds it from the corpus when there is none yet."""
        with self._ref_lock:
            if self._index is None:
                self._index = self._load(progress)
            return self._index

    def _load(self, progress: Progress | None) -> Index:
        try:
            return load_index(self.index_path, self.config, embedder=self.embedder)
        except (IndexNotFoundError, IndexCorruptError) as e:
            missing = isinstance(e, IndexNotFoundError)
            if self.corpus_path is None or not (missing or self.repair):
                raise
            if self.repair:
                log.warning("%s – Index wird aufgebaut.", e)
            return self._build(progress)

    def _build(self, progress: Progress | None) -> Index:
        if self.corpus_path is None:
            raise RagError(f"Kein Korpusordner für den Index unter {self.index_path} angegeben.")
        return build_index(
            self.corpus_path, self.index_path, self.config, embedder=self.embedder, progress=progress, lock_timeout=self.lock_timeout
        )

    def _swap(self, idx: Index) -> None:
        with self._ref_lock:
            self._index = idx
            self.updated = time.time()

    def clear_caches(self, which: Iterable[str] | None = None) -> None:
        """Forget the current version's memoised data (see Index.clear_caches)."""
        self.index.clear_caches(which)

    # -- questions
    def answer(
        self, question: str, k: int = 3, mode: str | None = None, filters: Filters | None = None, history: Sequence[str] | None = ()
    ) -> Answer:
        """Quoted answer (rag.Answer); `abstained` when the corpus does not say. `history`: the
        chat's earlier questions, oldest first (follow-ups are answered in their light)."""
        return self.answer_with_hashes(question, k, mode, filters, history)[0]

    def answer_with_hashes(
        self, question: str, k: int = 3, mode: str | None = None, filters: Filters | None = None, history: Sequence[str] | None = ()
    ) -> tuple[Answer, dict[str, str]]:
        """The answer and the content hash of each quoted article, both from the one index version
        that answered (a rebuild may swap in another meanwhile): a viewer can tell a changed article."""
        idx = self.index
        ans = answer(idx, question, k, mode, filters, history=history)
        return ans, {p.doc_id: idx.documents[p.doc_id].content_hash for p in ans.passages if p.doc_id in idx.documents}

    def retrieve(self, question: str, k: int = 5, mode: str | None = None, filters: Filters | None = None) -> list[Passage]:
        """The k best passages for `question`."""
        return retrieve(self.index, question, k, mode, filters)

    # -- new versions (serialised; questions go on meanwhile, answered from the previous version)
    def rebuild(self, progress: Progress | None = None, change: Callable[[], object] | None = None) -> Index:
        """Apply `change` to the corpus folder (under the lock), then bring the index up to date
        with the corpus and swap it in."""

        def make(report: Progress) -> Index:
            if change is not None:
                change()
            return self._build(report)

        return self._write(make, progress)

    def upsert(self, documents: Iterable[Document], progress: Progress | None = None) -> Index:
        """Add or replace documents (not written to the corpus folder) and swap the new version in."""
        return self._write(lambda report: self.index.upsert(documents, report), progress)

    def delete(self, doc_ids: Iterable[str]) -> Index:
        """Remove documents from the index (not from the corpus folder) and swap the new version in."""
        return self._write(lambda report: self.index.delete(doc_ids), None)

    def _write(self, make: Callable[[Progress], Index], progress: Progress | None) -> Index:
        report = progress or (lambda frac, msg: None)
        if self.build_lock.locked():
            report(0.0, "Warte auf laufenden Aufbau …")
        with self.build_lock:
            self.building = True
            try:
                idx = make(report)
                self._swap(idx)
                return idx
            finally:
                self.building = False
