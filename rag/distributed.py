"""Embedding on Ray (`rag build --ray [ADDRESS]`): the build's batches go to Ray actors.

Only the embedding leaves the driver. Each actor loads the encoder once (`load_embedder` with the
build's config) and embeds whole batches, exactly the batches a local build would embed (same
texts, same order, same size), so the vectors are the ones a local build computes, also for the
int8 backend whose numbers depend on the batch. The driver keeps writing the embedding cache batch
by batch as results arrive, and writes the index as always (manifest, atomic swap, lock): a build
killed midway leaves the old version, and what was embedded stays in the cache.

ADDRESS is what `ray.init(address=…)` takes: "local" (a Ray instance started for this build on this
machine, stopped after it), "auto" (the cluster this machine belongs to) or "host:port" / "ray://…".
Every node needs this package installed (the same version: a worker whose model fingerprint differs
from the driver's is refused). Ray is imported only here, so a build without --ray never loads it.

Starting Ray and the actors' models takes seconds (measured here: 2.2 s `ray.init`, 1.3 s for two
actors' models, 1.4 s `ray.shutdown`); the actors load their models while the driver sorts the
texts into batches.
"""
from __future__ import annotations

import logging
import socket
from typing import Iterator, Sequence

import numpy as np

from .config import Config
from .errors import ModelError, RagError

log = logging.getLogger(__name__)

IN_FLIGHT = 2  # batches queued per actor, so none waits for the driver between batches


class RayError(RagError):
    """Ray could not be started or reached, or its workers could not embed."""


def _first_line(e: BaseException, last: bool = False) -> str:
    lines = str(e).strip().splitlines() or [""]
    return f"{type(e).__name__}: {(lines[-1] if last else lines[0])[:200]}"


def _worker_class():
    import ray

    @ray.remote(num_cpus=1)
    class EmbedWorker:
        """One encoder per actor (Ray gives it one CPU: OMP_NUM_THREADS=1, which ONNX Runtime and
        torch follow, so actors on one machine do not fight over cores)."""

        def __init__(self, config: Config):
            from .embedding import load_embedder

            self.embedder = load_embedder(config)

        def fingerprint(self) -> str:
            return self.embedder.fingerprint

        def embed(self, texts: list[str]) -> np.ndarray:
            return self.embedder.embed_passages(texts)

    return EmbedWorker


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """For a "host:port" or "ray://host:port" address, fail at once with a clear error when
    nothing listens there (ray.init would retry for minutes and then end the process)."""
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"Ray-Adresse „{address}“ ist weder local, auto noch host:port.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayError(f"Ray unter „{address}“ nicht erreichbar: {e.strerror or e}") from None


class RayEmbedding:
    """Ray and up to `workers` embedding actors. The actors load their models in the background
    while the driver prepares the batches."""

    def __init__(self, config: Config, address: str, workers: int):
        try:
            import ray
        except ImportError as e:
            raise RayError("Ray ist nicht installiert: pip install 'rag[ray]'") from e
        self.address = address
        self.started = False
        self.actors: list = []
        if not ray.is_initialized():
            check_reachable(address)
        try:  # in the calling thread: Ray's driver must be set up from the main thread
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
                self.started = True
            cpus = int(ray.cluster_resources().get("CPU", 1))
            worker = _worker_class()
            self.actors = [worker.remote(config) for _ in range(max(1, min(cpus, workers)))]
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError …
            self.close()
            raise RayError(f"Ray unter „{address}“ nicht erreichbar: {_first_line(e)}") from e

    def embed(self, batches: Sequence[list[str]], fingerprint: str) -> Iterator[tuple[int, np.ndarray]]:
        """(batch number, vectors) for every batch, in the order they finish."""
        import ray

        try:
            prints = ray.get([a.fingerprint.remote() for a in self.actors])
        except Exception as e:  # noqa: BLE001 - an actor that cannot load the model
            raise RayError(f"Ray-Worker konnten das Modell nicht laden: {_first_line(e, last=True)}") from e
        if any(p != fingerprint for p in prints):
            raise ModelError(f"Ray-Worker nutzen ein anderes Modell ({sorted(set(prints))[0]}) als dieser Aufbau ({fingerprint}).")
        log.info("Einbetten auf Ray: %d Worker, %d Stapel", len(self.actors), len(batches))
        pending: dict = {}
        todo = iter(enumerate(batches))

        def submit(actor) -> None:
            item = next(todo, None)
            if item is not None:
                pending[actor.embed.remote(item[1])] = (item[0], actor)

        for actor in self.actors:
            for _ in range(IN_FLIGHT):
                submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            number, actor = pending.pop(ready[0])
            try:
                vectors = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001
                raise RayError(f"Einbetten auf Ray fehlgeschlagen: {_first_line(e, last=True)}") from e
            submit(actor)
            yield number, vectors

    def close(self) -> None:
        """Free the actors' CPUs (a Ray instance the caller started lives on) and stop a Ray
        instance this build started."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started:
            ray.shutdown()
            self.started = False
