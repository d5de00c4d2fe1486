"""Fixtures shared by every suite: the fake OpenAI-compatible server on loopback."""

pytest_plugins = ["tests.fakes.openai_server"]
