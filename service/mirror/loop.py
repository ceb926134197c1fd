"""The MLflow mirror as background work of ``headspec serve``: drain the outbox every few
seconds, so what a driver could not send (MLflow down at the end of its sweep) reaches MLflow
once it is back, without anyone running ``headspec mirror drain``. Several replicas (and the
drivers) may drain at once: outbox items are claimed under leases, and MLflow's SQL store
skips exact re-sends."""

from __future__ import annotations

import logging
import threading

from service.mirror.drain import drain
from service.store import Store

log = logging.getLogger(__name__)


class MirrorLoop:
    def __init__(self, store: Store, tracking_uri: str, every_seconds: float) -> None:
        self.store, self.tracking_uri, self.every = store, tracking_uri, every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """One drain; returns the items mirrored (0 when MLflow or the store is unreachable:
        the items stay queued for the next tick)."""
        from service.mirror.client import open_client

        try:
            result = drain(self.store, open_client(self.tracking_uri))
        except Exception as exc:
            log.warning("MLflow mirror: %s (will retry)", exc)
            return 0
        if result.items:
            log.info("MLflow mirror: %d items, %d metrics", result.items, result.metrics_logged)
        return int(result.items)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="headspec-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()
