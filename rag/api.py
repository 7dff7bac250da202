"""Module-level entry points for code: `rag.retrieve(...)`, `rag.answer(...)`.

One `RagService` per index folder and process: the index is built from the corpus on first use,
and a rebuild through the service (e.g. in the web UI) is seen by later calls."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

from .config import Config
from .retrieval import Filters
from .service import RagService

DEFAULT_INDEX = "index"
DEFAULT_CORPUS = "corpus"

_lock = threading.Lock()
_services: dict[Path, RagService] = {}


def service(index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS, config: Config | None = None) -> RagService:
    """The service of the index folder `index` (made on first use, with `corpus` and `config`)."""
    key = Path(index).resolve()
    with _lock:
        if key not in _services:
            _services[key] = RagService(index, corpus, config)
        return _services[key]


def register(svc: RagService) -> None:
    """Make `svc` the service of its index folder (the web UI's, so rag.answer sees its rebuilds)."""
    with _lock:
        _services[svc.index_path.resolve()] = svc


def get_index(index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS, config: Config | None = None):
    """The loaded index at `index`; built from `corpus` when none exists yet."""
    return service(index, corpus, config).index


def retrieve(
    question: str, k: int = 5, index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS,
    mode: str | None = None, **filters,
):
    """The k best passages for `question` (list of rag.Passage); `filters`: doc_ids, date_from, date_to."""
    return service(index, corpus).retrieve(question, k, mode, Filters(**filters) if filters else None)


def answer(
    question: str, k: int = 3, index: str | Path = DEFAULT_INDEX, corpus: str | Path | None = DEFAULT_CORPUS,
    mode: str | None = None, history: Sequence[str] | None = (), **filters,
):
    """Quoted, highlighted answer (rag.Answer); `abstained` when the corpus does not say.
    `history`: the chat's earlier questions, oldest first: a follow-up („Und wer hat das gemeldet?“)
    is answered in their light, and `Answer.context` names the question it leaned on."""
    return service(index, corpus).answer(question, k, mode, Filters(**filters) if filters else None, history=history)
