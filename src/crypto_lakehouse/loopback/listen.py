"""Where a loopback exchange listens: its ``wss://`` port (:mod:`.wsserver`, TLS with its own
certificate) and its REST port (aiohttp), opened and closed together. Shared by the synthetic
/replay exchange (:mod:`.server`) and the capture replay (:mod:`.capture`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from crypto_lakehouse.loopback.tls import Certificate
from crypto_lakehouse.loopback.wsserver import Handler as WsHandler
from crypto_lakehouse.loopback.wsserver import start_ws_server

__all__ = ["Listening", "listen"]


@dataclass(slots=True)
class Listening:
    """The two open ports; :meth:`close` closes both."""

    ws_server: asyncio.Server
    runner: web.AppRunner
    ws_url: str
    rest_url: str

    async def close(self) -> None:
        self.ws_server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws_server.wait_closed(), 2)
        await self.runner.cleanup()


async def listen(
    on_ws: WsHandler,
    on_rest: Handler,
    *,
    host: str,
    certificate: Certificate,
    ws_port: int = 0,
    rest_port: int = 0,
    middlewares: Sequence[Middleware] = (),
) -> Listening:
    """Open the ``wss://`` port (each upgraded connection to ``on_ws``) and the REST port (every
    GET to ``on_rest``); 0 picks free ports. An ``OSError`` (a busy port) leaves nothing open."""
    ws_server = await start_ws_server(on_ws, host=host, port=ws_port, ssl_context=certificate.server_context())
    app = web.Application(middlewares=list(middlewares))
    app.router.add_route("GET", "/{tail:.*}", on_rest)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, rest_port).start()
    except OSError:
        ws_server.close()
        await runner.cleanup()
        raise
    return Listening(
        ws_server,
        runner,
        ws_url=f"wss://{host}:{ws_server.sockets[0].getsockname()[1]}",
        rest_url=f"http://{host}:{runner.addresses[0][1]}",
    )
