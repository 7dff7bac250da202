"""Typed errors. Every error a user can cause is a RagError with a one-line German message."""


class RagError(Exception):
    """Base class of all errors the library raises on purpose."""


class CorpusError(RagError):
    """The corpus folder or a corpus file cannot be used."""


class IndexNotFoundError(RagError):
    """No built index at the given path."""


class IndexCorruptError(RagError):
    """The index on disk is truncated, altered or was built by another model/format."""


class ModelError(RagError):
    """The embedding model cannot be loaded or built."""


class QuestionError(RagError):
    """The question is empty or otherwise unusable."""


class IndexLockedError(RagError):
    """Another build holds the index lock."""
