"""RagService: the live index of one folder, shared by rag.answer/rag.retrieve, the CLI and the UI."""
from __future__ import annotations

import pytest

import rag
from fakes import FakeEmbedder
from rag import Config, IndexNotFoundError
from rag.answering import answer
from rag.api import register, service
from rag.corpus import Document
from rag.service import RagService

# Plumbing: the rules-only reader, never abstaining (the fake embedder's similarities are far below the real model's).
NO_ABSTAIN = Config(reader="heuristic", abstain_threshold=-1.0)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "gipfel.txt").write_text("Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden.", encoding="utf-8")
    (folder / "derby.txt").write_text("Rapid gewann das Wiener Derby gegen die Austria mit 2:1.", encoding="utf-8")
    return folder


def test_the_index_is_built_on_first_use_and_answers_come_from_it(tmp_path, corpus):
    svc = RagService(tmp_path / "idx", corpus, NO_ABSTAIN, FakeEmbedder())
    idx = svc.index
    assert set(idx.documents) == {"gipfel", "derby"} and svc.index is idx
    q = "Wie lange dauerte der Videogipfel?"
    assert svc.answer(q, k=1).to_dict() == answer(idx, q, 1).to_dict()
    ans, hashes = svc.answer_with_hashes(q, k=1)
    assert hashes == {"gipfel": idx.documents["gipfel"].content_hash}
    assert svc.retrieve("Derby Rapid", k=1)[0].doc_id == "derby"


def test_without_a_corpus_a_missing_index_is_an_error(tmp_path):
    with pytest.raises(IndexNotFoundError):
        RagService(tmp_path / "idx", None, NO_ABSTAIN, FakeEmbedder()).open()


def test_upsert_and_delete_swap_in_a_new_version_and_leave_the_old_one_unchanged(tmp_path, corpus):
    svc = RagService(tmp_path / "idx", corpus, NO_ABSTAIN, FakeEmbedder())
    old = svc.index
    new = svc.upsert([Document(id="nato", text="Die Nato verlegte Truppen nach Polen.", title="Nato", date=None, source="nato")])
    assert svc.index is new and "nato" in new.documents and "nato" not in old.documents
    assert svc.answer("Wohin verlegte die Nato Truppen?", k=1).passages[0].doc_id == "nato"
    assert "derby" not in svc.delete(["derby"]).documents and "derby" not in svc.index.documents


def test_a_rebuild_applies_the_change_to_the_corpus_first(tmp_path, corpus):
    svc = RagService(tmp_path / "idx", corpus, NO_ABSTAIN, FakeEmbedder())
    assert set(svc.index.documents) == {"gipfel", "derby"}
    idx = svc.rebuild(change=lambda: (corpus / "derby.txt").unlink())
    assert svc.index is idx and set(idx.documents) == {"gipfel"} and idx.last_build.removed == 1


def test_rag_answer_uses_the_registered_service_of_its_index_folder(tmp_path, corpus):
    svc = RagService(tmp_path / "idx", corpus, NO_ABSTAIN, FakeEmbedder())
    register(svc)
    assert service(tmp_path / "idx" / ".." / "idx") is svc  # one service per folder, however it is spelled
    svc.upsert([Document(id="nato", text="Die Nato verlegte Truppen nach Polen.", title="Nato", date=None, source="nato")])
    # A new version swapped in through the service is what rag.answer sees next.
    ans = rag.answer("Wohin verlegte die Nato Truppen?", k=1, index=tmp_path / "idx")
    assert ans.passages[0].doc_id == "nato"
    assert rag.retrieve("Nato Truppen", k=1, index=tmp_path / "idx", doc_ids=["gipfel"])[0].doc_id == "gipfel"
