"""The access log without secrets: a resume token (`?token=`, valid for a day) or a key a client
wrongly put in a query string never reaches the log.

    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
"""

from __future__ import annotations

import logging
import re

# A secret parameter by its name, or any parameter whose value is a kaiwa key (`kw_…`, also
# percent-encoded as `kw%5F…`), whatever its name.
_SECRET = re.compile(
    r"([?&](?:(?:token|api_key|api-key|x-api-key|key)=|[^=&#\s]*=(?=kw(?:_|%5f))))[^&#\s]*",
    re.IGNORECASE,
)
_REDACTED = r"\1[redacted]"


def redact(path: str) -> str:
    """`/events?token=abc&after=3` → `/events?token=[redacted]&after=3`; `?auth=kw_…` too."""
    return _SECRET.sub(_REDACTED, path) if "=" in path else path


class RedactSecrets(logging.Filter):
    """For uvicorn's access records, whose arguments are (client, method, path, version,
    status): the path's secret query values are replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def install() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
