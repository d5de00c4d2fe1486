"""`kaiwa chat`: a terminal chat with an agent, built only on `kaiwa.client` and the protocol.

    kaiwa chat [--url URL] [--api-key KEY] [--agent ID] [--chat ID]   # interactive
    kaiwa chat --once "営業時間は?"                                     # the answer, for scripts
    kaiwa chat --json [--once "…"]                                     # events as JSON lines

`--url`, `--api-key` and `--agent` default to `KAIWA_BASE_URL` (else http://127.0.0.1:8000),
`KAIWA_API_KEY` and `KAIWA_AGENT_ID`; without an agent, the only published one is used, or the
user picks one. The interactive view needs rich (`pip install 'kaiwa[chat]'`); `--once` and
`--json` print plainly and work on the base install.

An answer that asks for a form is answered by prompting for its fields, then goes on; `--once`
prints the form request as JSON on stderr and exits 3 instead. `Options.attach` uploads files and
attaches them to the first question.

Modules: `session` (agent, chat, ask, submit and stop: no rendering), `form` (a form request as
prompts), `plain` (JSON lines, quiet), `view` (rich), `app` (the loop and the exit codes).
"""

from kaiwa.chat.app import Options, run

__all__ = ["Options", "run"]
