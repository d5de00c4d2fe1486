"""`kaiwa chat`: a terminal chat with an agent, built only on `kaiwa.client` and the protocol.

    kaiwa chat [--url URL] [--api-key KEY] [--agent NAME|ID] [--chat ID] [--lang ja|en]
    kaiwa chat --once "営業時間は?"                                     # the answer, for scripts
    kaiwa chat --json [--once "…"]                                     # events as JSON lines

`--url`, `--api-key` and `--agent` default to `KAIWA_BASE_URL` (else http://127.0.0.1:8000),
`KAIWA_API_KEY` and `KAIWA_AGENT_ID`; without an agent, the chat's (`--chat`), the only published
one, or the one the user picks. A chat is created with its first question. The interactive view
needs rich (`pip install 'kaiwa[chat]'`); `--once` and `--json` print plainly and work on the
base install. Its words are English or Japanese, from the terminal's locale or `--lang`.

An answer that asks for a form is answered by prompting for its fields, then goes on; `--once`
prints the form request as JSON on stderr and exits 3 instead. `Options.attach` uploads files and
attaches them to the first question.

Modules: `session` (agent, chat, ask, submit and stop: no rendering), `steps` (a step as a
sentence and what it found), `form` (a form request as prompts), `lang` (every string, in both
languages), `errors` (what went wrong, worded), `plain` (JSON lines, quiet), `view` (rich), `app`
(the loop and the exit codes).
"""

from kaiwa.chat.app import Options, run

__all__ = ["Options", "run"]
