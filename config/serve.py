"""``python -m config.serve [daphne options] config.asgi:application``: daphne with a redacting access log.

The same command line as ``daphne``; the only difference is the access log (verbosity 1 and up, or
``--access-log``), whose request lines go through :func:`config.logging.redact_url`, so the chat
socket's ``?token=`` (or any credential in a query string) is written as ``token=[redacted]``.
"""

from __future__ import annotations

from typing import Any

import daphne.cli
from daphne.access import AccessLogGenerator

from config.logging import redact_url


class RedactingAccessLog(AccessLogGenerator):
    """daphne's NCSA-style access log with credentials taken out of the request line."""

    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, redact_url(request), *args, **kwargs)


def main() -> None:
    # daphne's CLI builds its access log from the module-level name; this launcher swaps in ours.
    daphne.cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[misc]
    daphne.cli.CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
