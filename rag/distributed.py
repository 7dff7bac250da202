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
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np

from .config import Config
from .errors import ModelError, RagError

log = logging.getLogger(__name__)

IN_FLIGHT = 2  # batches queued per actor, so none waits for the driver between batches


class RayError(RagError):
    """Ray could not be started or reached, or its workers could not embed."""


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


def _start(address: str):
    """ray.init for `address`; returns whether this call started Ray (and must stop it)."""
    try:
        import ray
    except ImportError as e:
        raise RayError("Ray ist nicht installiert: pip install 'rag[ray]'") from e
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError …
        raise RayError(f"Ray unter „{address}“ nicht erreichbar: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    return True


def embed_batches(
    batches: Sequence[list[str]], config: Config, fingerprint: str, address: str = "local"
) -> Iterator[tuple[int, np.ndarray]]:
    """(batch number, vectors) for every batch, in the order they finish."""
    if not batches:
        return
    started = _start(address)
    import ray

    actors: list = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_workers = max(1, min(cpus, len(batches)))
        worker = _worker_class()
        actors = [worker.remote(config) for _ in range(n_workers)]
        try:
            prints = ray.get([a.fingerprint.remote() for a in actors])
        except Exception as e:  # noqa: BLE001 - an actor that cannot load the model
            raise RayError(f"Ray-Worker konnten das Modell nicht laden: {type(e).__name__}: {str(e).splitlines()[-1][:200]}") from e
        if any(p != fingerprint for p in prints):
            raise ModelError(f"Ray-Worker nutzen ein anderes Modell ({sorted(set(prints))[0]}) als dieser Aufbau ({fingerprint}).")
        log.info("Einbetten auf Ray: %d Worker, %d Stapel", n_workers, len(batches))
        pending: dict = {}
        todo = iter(enumerate(batches))

        def submit(actor) -> None:
            item = next(todo, None)
            if item is not None:
                pending[actor.embed.remote(item[1])] = (item[0], actor)

        for actor in actors:
            for _ in range(IN_FLIGHT):
                submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            number, actor = pending.pop(ready[0])
            try:
                vectors = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001
                raise RayError(f"Einbetten auf Ray fehlgeschlagen: {type(e).__name__}: {str(e).splitlines()[-1][:200]}") from e
            submit(actor)
            yield number, vectors
    finally:
        for actor in actors:  # a Ray instance the caller started lives on: free its CPUs
            ray.kill(actor)
        if started:
            ray.shutdown()
