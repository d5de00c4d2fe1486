"""kaiwa: a self-hosted AI agent chat server, wire-compatible with the Codeer chat API."""

__version__ = "0.1.0"
