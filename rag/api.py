"""Module-level entry points for code: `rag.retrieve(...)`, `rag.answer(...)`.

The index is built from the corpus on first use and cached per process."""
from __future__ import annotations

import threading
from pathlib import Path

from .config import Config
from .errors import IndexNotFoundError

DEFAULT_INDEX = "index"
DEFAULT_CORPUS = "corpus"

_lock = threading.Lock()
_cache: dict[str, object] = {}


def get_index(index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS, config: Config | None = None):
    """The loaded index at `index`; built from `corpus` when none exists yet."""
    from .store import build_index, load_index

    key = str(Path(index).resolve())
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        try:
            idx = load_index(index, config)
        except IndexNotFoundError:
            if corpus is None:
                raise
            idx = build_index(corpus, index, config)
        _cache[key] = idx
        return idx


def set_index(idx) -> None:
    """Replace the cached index (after a rebuild) so later calls see the new version."""
    with _lock:
        _cache[str(Path(idx.root).resolve())] = idx


def retrieve(question: str, k: int = 5, index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS, **filters):
    """The k best passages for `question` (list of rag.Passage)."""
    return get_index(index, corpus).retrieve(question, k=k, **filters)


def answer(question: str, k: int = 3, index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS, **filters):
    """Quoted, highlighted answer (rag.Answer); `abstained` when the corpus does not say."""
    return get_index(index, corpus).answer(question, k=k, **filters)
