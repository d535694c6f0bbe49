"""Running an asyncio gRPC server in a background thread, for the suite's own fakes (the
centre role's fake municipalities) and for self-tests that start a server and then run the
synchronous suite against it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

STARTUP_TIMEOUT = 60.0


class ServerDidNotStart(RuntimeError):
    """The background server failed or did not report its port in time."""


@contextlib.contextmanager
def background_server(
    factory: Callable[[], AbstractAsyncContextManager[Any]],
) -> Iterator[Any]:
    """Enter ``factory()`` (an async context manager yielding e.g. a port) on a private event
    loop in a thread; yield what it yields; exit it and stop the loop on leaving."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with factory() as value:
                box["value"] = value
                ready.set()
                await stop.wait()
        except BaseException as error:  # reported to the caller's thread
            box["error"] = error
            ready.set()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    if not ready.wait(STARTUP_TIMEOUT) or "error" in box:
        raise ServerDidNotStart(repr(box.get("error", "timeout")))
    try:
        yield box["value"]
    finally:
        loop.call_soon_threadsafe(lambda: stop.set() if stop else None)  # type: ignore[union-attr]
        thread.join(30)
        loop.close()
