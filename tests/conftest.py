"""Fixtures shared by every suite: fake servers on loopback (models, web, search)."""

pytest_plugins = [
    # A module another one imports comes first: pytest can only rewrite modules not yet imported.
    "tests.fakes.openai_server",
    "tests.fakes.web_server",
    "tests.fakes.anthropic_server",
    "tests.fakes.search_servers",
]
