"""The vector index of a version: exact search for small indexes, IVF above `Config.ann_threshold`.

Exact (`IndexFlatIP` under an id map) is the best choice up to a few hundred thousand chunks: no
training, perfect recall, a search of 10⁵ vectors takes a few ms. Above the threshold the index is an
inverted file (`IndexIVFScalarQuantizer`, inner product) whose vectors are stored as float16:
k-means cells trained once on a sample, each search scans the `nprobe` nearest cells. Chosen by
measurement at 10⁶ chunks (README, Scale): e5's question vectors sit apart from its passage vectors,
so a question's nearest passages spread over many cells and ≈ 9 % of the cells must be scanned for
recall@10 ≥ 0.95. HNSW reached 0.51 at efSearch 128; float16 gives the recall of full floats
(0.981 against 0.984 at 15 % probed) at half the bytes, so a scan is about twice as fast; 8-bit
codes lost 1–2 points. It supports removing ids, so an incremental build
updates it in place instead of rebuilding, and it can be opened memory-mapped (`Config.ann_mmap`).

The type and its parameters are recorded in the manifest; a version always opens with the type it
was written with, and an IVF index stays IVF when later builds shrink it (its cells stay trained).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FLAT = "flat"
IVF = "ivf-fp16"
TRAIN_PER_CELL = 40  # k-means points per cell (faiss warns below 39)
TRAIN_MAX = 200_000  # the sample a new IVF index is trained on
_MAP_LOCK = threading.Lock()


def ivf_cells(n: int, config) -> int:
    """Number of IVF cells for n vectors: `ann_cells_per_sqrt` × √n, a power of two, at least 1 and
    small enough that the training sample holds TRAIN_PER_CELL points per cell."""
    want = config.ann_cells_per_sqrt * math.sqrt(max(n, 1))
    cells = 2 ** max(0, round(math.log2(max(want, 1))))
    return max(1, min(cells, n // TRAIN_PER_CELL, TRAIN_MAX // TRAIN_PER_CELL))


def ivf_probes(cells: int, config) -> int:
    """Cells searched per question: `ann_probe_share` of them (recall depends on the share of the
    vectors scanned, measured alike for 1,024 to 4,096 cells)."""
    return max(1, min(cells, math.ceil(config.ann_probe_share * cells)))


@dataclass
class VectorIndex:
    """A FAISS index addressed by chunk id, with its manifest parameters ({"type", …})."""

    faiss: object
    params: dict

    @property
    def ntotal(self) -> int:
        return self.faiss.ntotal

    @property
    def dim(self) -> int:
        return self.faiss.d

    # -- making
    @classmethod
    def empty(cls, dim: int) -> "VectorIndex":
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {"type": FLAT})

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, config, seed: int = 0) -> "VectorIndex":
        """A new index over these vectors: exact below `config.ann_threshold`, else IVF trained on a
        sample of them."""
        n = len(ids)
        if n < config.ann_threshold:
            index = cls.empty(dim)
        else:
            index = cls.trained(vectors, dim, config, seed)
        index.add(ids, vectors)
        return index

    @classmethod
    def trained(cls, vectors: np.ndarray, dim: int, config, seed: int = 0) -> "VectorIndex":
        import faiss

        n = len(vectors)
        cells = ivf_cells(n, config)
        rng = np.random.default_rng(seed)
        sample = vectors if n <= cells * TRAIN_PER_CELL else vectors[np.sort(rng.choice(n, cells * TRAIN_PER_CELL, replace=False))]
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, cells, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10  # measured: more iterations do not raise recall at the chosen nprobe
        ivf.cp.seed = seed
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.nprobe = ivf_probes(cells, config)
        return cls(ivf, {"type": IVF, "nlist": cells, "nprobe": ivf.nprobe, "trained_on": len(sample)})

    # -- changing (only on an index read with writable=True or just built)
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.faiss.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            import faiss

            self.faiss.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def set_probes(self, config) -> None:
        """Search the share of cells `config` asks for (an incremental build may change it)."""
        if self.params["type"] == IVF:
            self.faiss.nprobe = ivf_probes(self.params["nlist"], config)
            self.params["nprobe"] = self.faiss.nprobe

    def write(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.faiss, str(path))

    @classmethod
    def read(cls, path: Path, params: dict, writable: bool = False, mmap: bool = False) -> "VectorIndex":
        """Open a stored index, into memory or (`mmap`, IVF only, not to be changed) memory-mapped:
        then opening costs milliseconds at any size and only the cells searched are read."""
        import faiss

        flags = faiss.IO_FLAG_MMAP if mmap and params.get("type") == IVF and not writable else 0
        index = cls(faiss.read_index(str(path), flags), dict(params))
        if params.get("type") == IVF:
            index.faiss.nprobe = params["nprobe"]
            # One question's cells are scanned by all of faiss's threads (not one thread per
            # question): measured at 10⁶ chunks, ≈ 40 % less time per question on 2 cores.
            index.faiss.parallel_mode = 1
        return index

    # -- reading
    def search(self, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), n)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if self.params["type"] == IVF and not self.faiss.direct_map.type:
            import faiss

            with _MAP_LOCK:  # built on first use: an id → (cell, offset) table, one pass over the cells
                if not self.faiss.direct_map.type:
                    self.faiss.set_direct_map_type(faiss.DirectMap.Hashtable)
        return self.faiss.reconstruct_batch(ids)
