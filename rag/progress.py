"""Progress reports of long steps (index builds, eval runs) and their terminal bar."""
from __future__ import annotations

from typing import Callable

__all__ = ["Progress", "progress_bar"]

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is being done)


def progress_bar(desc: str, enabled: bool = True):
    """A tqdm bar in percent on stderr and a `Progress` callback that moves it: `(bar, progress)`.
    The caller closes the bar."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%", leave=False, disable=not enabled)

    def progress(frac: float, msg: str) -> None:
        bar.set_description(msg)
        bar.n = int(frac * 100)
        bar.refresh()

    return bar, progress
