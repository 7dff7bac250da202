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
    "ModelError", "QuestionError", "build_index", "load_index", "Index", "retrieve", "answer", "get_index",
    "Passage", "Answer", "Agreement", "Filters", "RagService", "Document", "Chunk",
]

# Heavy modules (faiss, bm25s, torch) load on first use, so `import rag` stays fast.
_LAZY = {
    "build_index": "store", "load_index": "store", "Index": "store", "BuildSummary": "store",
    "Passage": "retrieval", "Filters": "retrieval", "RagService": "service",
    "Answer": "answering", "Agreement": "answering",
    "answer": "api", "retrieve": "api", "get_index": "api",
    "Document": "corpus", "Chunk": "chunking",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
