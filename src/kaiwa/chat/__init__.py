"""`kaiwa chat`: a terminal chat with an agent, built only on `kaiwa.client` and the protocol.

    kaiwa chat [--url URL] [--api-key KEY] [--agent ID] [--chat ID]   # interactive
    kaiwa chat --once "営業時間は?"                                     # the answer, for scripts
    kaiwa chat --json [--once "…"]                                     # events as JSON lines

`--url`, `--api-key` and `--agent` default to `KAIWA_BASE_URL` (else http://127.0.0.1:8000),
`KAIWA_API_KEY` and `KAIWA_AGENT_ID`; without an agent, the only published one is used, or the
user picks one. The interactive view needs rich (`pip install 'kaiwa[chat]'`); `--once` and
`--json` print plainly and work on the base install.

Modules: `session` (agent, chat, ask and stop: no rendering), `plain` (JSON lines, quiet),
`view` (rich), `app` (the loop and the exit codes).

Left out: form requests (`awaiting_form`) are not turned into prompts, because the server does
not serve forms yet.
"""

from kaiwa.chat.app import Options, run

__all__ = ["Options", "run"]
