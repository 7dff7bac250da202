"""A tiny deterministic embedder for plumbing tests (never for retrieval-quality claims)."""
from __future__ import annotations

import hashlib
import re
import threading
import time

import numpy as np


class FakeEmbedder:
    """Hashed bag of lower-cased words, L2-normalised; counts what it embeds."""

    def __init__(self, dim: int = 64, fingerprint: str = "fake@1", delay: float = 0.0):
        self.name = "fake"
        self.dim = dim
        self.fingerprint = fingerprint
        self.delay = delay  # seconds per call, to make builds slow enough to interrupt
        self.calls = 0
        self.embedded = 0

    def _embed(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def embed_passages(self, texts, progress=None, isolated=False) -> np.ndarray:
        texts = list(texts)
        self.calls += 1
        self.embedded += len(texts)
        if self.delay:
            time.sleep(self.delay)
        return self._embed(texts)

    def embed_queries(self, texts) -> np.ndarray:
        return self._embed(list(texts))



class HeldBuild:
    """A build progress callback that stops the build at its first step at or past `at` (a fraction;
    the default is after embedding, before the new version is written) until `release` is set, and
    sets `reached` when it stops there: a test can act while a build is certainly in progress."""

    def __init__(self, at: float = 0.9):
        self.at = at
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, frac: float, msg: str) -> None:
        if self.at <= frac < 1.0 and not self.reached.is_set():
            self.reached.set()
            if not self.release.wait(60):
                raise TimeoutError("the held build was never released")
