"""Upstreams that fail on purpose, on loopback: one that reads a whole request and then resets
the connection without answering (counting the requests it read, by method), and one that
accepts connections and never answers (a stalled process)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["reset", "stall"]


@dataclass
class FaultyUpstream:
    """A raw TCP server on 127.0.0.1 that fails every request it reads."""

    fault: Fault
    url: str = ""
    received: Counter[str] = field(default_factory=Counter)  # requests read, by method
    _server: asyncio.Server | None = None
    _held: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self, port: int = 0) -> FaultyUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        bound = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{bound}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._held:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault == "stall":
            self._held.append(writer)  # never answered; closed with the server
            return
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0].decode()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            self.received[method] += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        sock = writer.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close sends RST, as a crashing backend does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
