"""The split of the question sets by article, the same on every machine: 20 % of the articles are
dev (`rag eval --split dev` asks about those), and of the training articles a further 10 % are
kept out of the reader's own training to fit its combiner (rag.reader.calibrate). A leaf module:
both training (rag.reader.data) and evaluation (rag.evaluation) split by it."""
from __future__ import annotations

import hashlib

__all__ = ["DEV_SHARE", "CALIBRATION_SHARE", "split_hash", "is_dev", "is_calibration"]

DEV_SHARE = 0.2  # of the articles, held out of training; `rag eval --split dev` asks about these
CALIBRATION_SHARE = 0.1  # of the training articles, held out of the reader's training for the combiner


def split_hash(key: str) -> float:
    """A stable number in [0, 1] for `key` (SHA-256), the same on every machine."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def is_dev(group: str, dev_share: float = DEV_SHARE) -> bool:
    """A stable split by article (a hash of its id), the same on every machine."""
    return split_hash(group) < dev_share


def is_calibration(group: str, share: float = CALIBRATION_SHARE) -> bool:
    """A second, independent split of the training articles (salted hash)."""
    return split_hash(f"calibration:{group}") < share
