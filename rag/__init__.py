"""rag: question answering over German news articles, answered with quoted, sourced passages.

    import rag
    ans = rag.answer("Wie lange dauerte der Gipfel?")
    for p in ans.passages: print(p.text[slice(*p.highlight)], p.doc_id, p.start, p.end)
"""
from .config import Config
from .errors import (
    CorpusError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelError,
    QuestionError,
    RagError,
)

__all__ = [
    "Config", "RagError", "CorpusError", "IndexCorruptError", "IndexLockedError", "IndexNotFoundError",
    "ModelError", "QuestionError", "build_index", "load_index", "Index", "retrieve", "answer",
    "Passage", "Answer", "Document", "Chunk",
]

# The submodule rag.answer would shadow the function rag.answer: import it first, then bind the function.
from . import answer as _answer_module  # noqa: E402,F401
from .answer import Agreement, Answer  # noqa: E402
from .api import answer, get_index, retrieve  # noqa: E402

# Heavy modules (faiss, bm25s, torch) load on first use, so `import rag` stays fast.
_LAZY = {
    "build_index": "store", "load_index": "store", "Index": "store", "BuildSummary": "store",
    "Passage": "retrieval",
    "Document": "corpus", "Chunk": "chunking",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
