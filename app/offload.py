"""Where the CPU-heavy work of a request runs, so that the event loop keeps answering.

* **Bodies** larger than ``INLINE_BODY_BYTES`` are decoded (JSON validation, Avro) in a worker
  process: pydantic's and fastavro's compiled decoders hold the GIL for the whole call (a 14 MB
  JSON body held it for 2.7 s), so a thread would still stall ``/healthz``. Smaller bodies, the
  usual alert or light curve, are decoded on the loop, where a hop would cost more than the work.
* **Encoding, ingest and plots** run in threads behind one capacity limiter of ``cpu_workers``
  tokens: those release the GIL often (PyTorch, NumPy) or run Python bytecode, which yields it
  every 5 ms, so with few of them at once the loop gets its turns; more requests wait their turn.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import anyio
import anyio.to_thread

from app.bodies import BodyError, parse_body
from encoder.lightcurve import LightCurve

log = logging.getLogger("rtf.offload")
T = TypeVar("T")
#: Bodies up to this size are decoded on the event loop (~10 ms of JSON validation at most).
INLINE_BODY_BYTES = 64 << 10


class Offload:
    """The limiter of heavy threads and the pool of decoding processes of one app (make it in
    the app's lifespan: the limiter belongs to the running event loop)."""

    def __init__(self, cpu_workers: int, decode_workers: int) -> None:
        self.cpu = anyio.CapacityLimiter(cpu_workers)
        self.decode_workers = decode_workers
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a thread, at most ``cpu_workers`` at once."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.cpu)

    async def parse(self, ctype: str, body: bytes, max_batch: int, max_inflated_bytes: int) -> list[LightCurve]:
        """:func:`app.bodies.parse_body`, in a worker process when the body is large."""
        if len(body) <= INLINE_BODY_BYTES or self.decode_workers == 0:
            return parse_body(ctype, body, max_batch, max_inflated_bytes)
        if self._pool is None:  # started on first use: most deployments never get a large body
            self._pool = ProcessPoolExecutor(self.decode_workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.wrap_future(self._pool.submit(parse_body, ctype, body, max_batch, max_inflated_bytes))
        except BrokenProcessPool:  # a worker died (killed, out of memory): a new pool for the next body
            log.error("a body-decoding worker died; starting a new pool")
            self._pool = None
            raise BodyError(413, "body: decoding it exhausted the worker's resources") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
