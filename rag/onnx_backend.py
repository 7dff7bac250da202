"""An ONNX Runtime backend for BERT-type sentence-transformers folders (mean pooling), int8 weights.

The same encoder as `embedding._LeanBert` (embeddings, 12 BERT layers, mean pooling, L2 norm) is
exported once with `torch.onnx.export` and dynamically quantised to int8 (`quantize_dynamic`, per output channel:
MatMul weights and the word-embedding table), then cached beside the converted model:
``<cache>/onnx/<model fingerprint>-int8.onnx``. Exporting needs torch and the `onnx` package;
running needs only onnxruntime, numpy and tokenizers.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import ModelError

Progress = Callable[[int, int], None]

QUANT = "int8"
EXPORT_VERSION = 1  # bump when the exported graph changes the numbers


@functools.lru_cache(maxsize=4)
def shared_tokenizer(path: str):
    """A tokenizer.json loaded once per process and shared by the embedder and the answer reader
    (parsing e5's 17 MB file takes ≈ 0.7 s of a cold start). Without padding or truncation, and
    never reconfigured afterwards, so threads can share it; callers cut ids to their own length."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    return tok


def token_ids(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Ids with special tokens, cut to max_len the way the tokenizer's own truncation cuts a single
    text: the content is shortened, the closing special token kept."""
    out = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids = enc.ids
        out.append(ids if len(ids) <= max_len else ids[: max_len - 1] + ids[-1:])
    return out


def _session(ort, graph: Path, so):
    """An inference session over `graph`, optimised once: the first session saves its optimised
    graph beside the exported one, later ones load that and skip optimising (≈ 0.2 s of every cold
    start). "Extended" optimisations (the transformer fusions) are portable across CPUs, unlike
    "all" (layout changes tied to the machine); for this model both run the same kernels."""
    optimised = graph.with_name(graph.stem + ".opt.onnx")
    if optimised.is_file():
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(optimised), so, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a damaged cache file: optimise again below
            optimised.unlink(missing_ok=True)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    tmp = optimised.with_name(f".{optimised.name}.{os.getpid()}.tmp")
    so.optimized_model_filepath = str(tmp)
    session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    if tmp.is_file():
        os.replace(tmp, optimised)  # atomic: a concurrent process sees the old state or the whole file
    return session


def onnx_path(cache: Path, fingerprint: str) -> Path:
    safe = fingerprint.replace("/", "_").replace(":", "_").replace("@", "_")
    return cache / "onnx" / f"{safe}-e{EXPORT_VERSION}-{QUANT}.onnx"


def export_int8(model_dir: Path, dest: Path) -> Path:
    """Write the int8 ONNX encoder of `model_dir` to `dest` (atomically). Needs torch and onnx."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    H, nh, NL = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    sd = {k.removeprefix("bert."): v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            P = lambda t: torch.nn.Parameter(t, requires_grad=False)  # noqa: E731
            self.p = torch.nn.ParameterDict({
                "word": P(sd["embeddings.word_embeddings.weight"]),
                "pos": P(sd["embeddings.position_embeddings.weight"]),
                "tok_type": P(sd["embeddings.token_type_embeddings.weight"][0]),
                "ln_w": P(sd["embeddings.LayerNorm.weight"]), "ln_b": P(sd["embeddings.LayerNorm.bias"]),
            })
            for i in range(NL):
                pre = f"encoder.layer.{i}."
                qkv = ("query", "key", "value")
                self.p[f"{i}_qkv_w"] = P(torch.cat([sd[pre + f"attention.self.{n}.weight"] for n in qkv]).T.contiguous())
                self.p[f"{i}_qkv_b"] = P(torch.cat([sd[pre + f"attention.self.{n}.bias"] for n in qkv]))
                for short, name in (("ao", "attention.output.dense"), ("fi", "intermediate.dense"), ("fo", "output.dense")):
                    self.p[f"{i}_{short}_w"] = P(sd[pre + name + ".weight"].T.contiguous())
                    self.p[f"{i}_{short}_b"] = P(sd[pre + name + ".bias"])
                for short, name in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
                    self.p[f"{i}_{short}_w"] = P(sd[pre + name + ".weight"])
                    self.p[f"{i}_{short}_b"] = P(sd[pre + name + ".bias"])

        def forward(self, input_ids, attention_mask):
            p = self.p
            B, L = input_ids.shape
            x = p["word"][input_ids] + p["pos"][:L] + p["tok_type"]
            x = F.layer_norm(x, (H,), p["ln_w"], p["ln_b"], eps)
            mf = attention_mask.to(x.dtype)
            bias = ((1.0 - mf) * -1e4)[:, None, None, :]
            dh = H // nh
            for i in range(NL):
                qkv = (torch.matmul(x, p[f"{i}_qkv_w"]) + p[f"{i}_qkv_b"]).view(B, L, 3, nh, dh).permute(2, 0, 3, 1, 4)
                s = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * (dh ** -0.5) + bias
                ctx = torch.matmul(torch.softmax(s, dim=-1), qkv[2]).transpose(1, 2).reshape(B, L, H)
                x = F.layer_norm(x + torch.matmul(ctx, p[f"{i}_ao_w"]) + p[f"{i}_ao_b"], (H,), p[f"{i}_ln1_w"], p[f"{i}_ln1_b"], eps)
                mid = F.gelu(torch.matmul(x, p[f"{i}_fi_w"]) + p[f"{i}_fi_b"])
                x = F.layer_norm(x + torch.matmul(mid, p[f"{i}_fo_w"]) + p[f"{i}_fo_b"], (H,), p[f"{i}_ln2_w"], p[f"{i}_ln2_b"], eps)
            pooled = (x * mf.unsqueeze(-1)).sum(1) / mf.sum(1, keepdim=True).clamp(min=1e-9)
            return F.normalize(pooled, dim=-1)

    return export_quantized(Encoder().eval(), dest, "embedding", {0: "b"})


def export_quantized(module, dest: Path, output: str, output_axes: dict[int, str]) -> Path:
    """Export a torch module taking (input_ids, attention_mask) to ONNX and quantise its weights
    to int8 (dynamic, per channel); written to `dest` atomically. Needs torch and onnx."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        ids = torch.randint(5, 1000, (2, 16))
        mask = torch.ones_like(ids)
        mask[1, 10:] = 0
        with torch.inference_mode():
            torch.onnx.export(
                module, (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"],
                output_names=[output], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": {0: "b", 1: "l"}, "attention_mask": {0: "b", 1: "l"}, output: output_axes},
            )
        q = Path(tmp) / "model-int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs advice about pre-processing on the root logger
        try:
            quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        os.replace(q, dest)
    return dest


class OnnxBert:
    """Tokenises like `_LeanBert` (prompt + text, truncation, longest first) and runs the int8 graph."""

    kind = "onnx-int8"
    # Activations are quantised with one scale per batch, so a text's vector moves slightly with
    # the texts it is batched with.
    batch_invariant = False

    def __init__(self, model_dir: Path, graph: Path, threads: int | None = None):
        import onnxruntime as ort

        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.dim = cfg["hidden_size"]
        self.pad_id = cfg.get("pad_token_id") or 0
        max_len = cfg.get("max_position_embeddings", 512)
        try:
            st = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
            max_len = min(max_len, int(st.get("max_seq_length") or max_len))
            self.lower = bool(st.get("do_lower_case", False))
        except (OSError, ValueError):
            self.lower = False
        self.max_len = max_len
        self.graph = graph
        self.tokenizer = shared_tokenizer(str(model_dir / "tokenizer.json"))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        # No spinning between ops: on a busy machine a spinning thread steals the core its partner needs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = _session(ort, graph, so)
        except Exception as e:
            raise ModelError(f"ONNX-Modell {graph} nicht ladbar: {e}") from e
        self._lock = threading.Lock()

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.lower:
            texts = [t.lower() for t in texts]
        return token_ids(self.tokenizer, texts, self.max_len)

    def encode(self, texts: list[str], prompt: str, batch_size: int, progress: Progress | None) -> np.ndarray:
        ids = self.token_ids([prompt + t for t in texts])
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        done = 0
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            L = max(len(ids[i]) for i in part)
            batch = np.full((len(part), L), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(part), L), dtype=np.int64)
            for row, i in enumerate(part):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            with self._lock:
                out[part] = self.session.run(None, {"input_ids": batch, "attention_mask": mask})[0]
            done += len(part)
            if progress is not None:
                progress(done, len(ids))
        return out
