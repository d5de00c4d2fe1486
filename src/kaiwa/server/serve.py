"""Running the app under uvicorn, with kaiwa's graceful shutdown.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for open ones to finish
before the app's lifespan ends, so an open stream would otherwise only end when its answer does.
The server below tells the app as soon as the signal arrives: running responses get
`shutdown_grace` seconds, then are cancelled, and every stream ends with `[DONE]`.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from kaiwa.config import Settings
from kaiwa.server.app import create_app


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_shutdown = getattr(self._app.state, "begin_shutdown", None)
        if begin_shutdown is not None and not self.should_exit:
            begin_shutdown()
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Past the grace period the producers are cancelled and end their streams at once;
        # the few seconds more are for the last frames to reach the clients.
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )
    _Server(config, app).run()
