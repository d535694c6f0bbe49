"""The storage interface for grpc.aio servers: the same ``run`` on a bounded thread pool."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from konbini.storage.store import DEFAULT_RETRIES, Store, Tx

T = TypeVar("T")


class AsyncStore:
    """Runs :meth:`Store.run` on its own threads so the event loop never blocks on the database.

    If the awaiting task is cancelled, the transaction still finishes (commits or rolls back) in
    its thread; a client that retries with the same request_id then gets the stored outcome.
    """

    def __init__(self, store: Store, *, max_workers: int = 8) -> None:
        self.store = store
        self.dialect = store.dialect
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="konbini-storage"
        )

    async def run(
        self,
        fn: Callable[[Tx], T],
        *,
        write: bool = True,
        retries: int = DEFAULT_RETRIES,
    ) -> T:
        """``await store.run(fn)``: see :meth:`Store.run`."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.store.run, fn, write=write, retries=retries)
        return await loop.run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Wait for running transactions, then close the store."""
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
