"""HTTP: routes, auth, the envelope, limits and the SSE writer. The only layer that knows HTTP."""

from kaiwa.server.app import create_app

__all__ = ["create_app"]
