"""A TCP proxy in front of the test PostgreSQL server, that a test can break like a network.

`stall()` is a dead link: connections stay open and new ones are accepted, but no byte goes
through in either direction. `refuse()` is a database that is down: open connections are cut
and the port is closed. `restore()` undoes either.
"""

from __future__ import annotations

import asyncio
import contextlib

_CHUNK = 64 * 1024


class DatabaseProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1 (the same one again after `refuse()`)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stall(self) -> None:
        self._flowing.clear()

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._cut_all()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Stop listening and cut every connection; the handlers then run to their end."""
        await self.refuse()
        self._flowing.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client)
        upstream: asyncio.StreamWriter | None = None
        try:
            # A stalled link accepts the connection and then says nothing, not even to the server.
            await self._flowing.wait()
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            self._writers.add(upstream)
            await asyncio.gather(
                self._pipe(client_reader, upstream), self._pipe(upstream_reader, client)
            )
        except OSError:
            pass
        finally:
            for writer in (client, upstream):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                # Held back, not dropped, while stalled: TCP delivers late, once a link is back.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
