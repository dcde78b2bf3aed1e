"""How large a request body each route accepts, read by the server before the body arrives.

``body_limit(method, path)``: the first ``REQUEST_BODY_LIMITS`` entry whose method and path pattern
match, else ``DATA_UPLOAD_MAX_MEMORY_SIZE``. The default entry is the PDF upload (``MAX_UPLOAD_MB``
plus room for the multipart form around the file). Apps that accept other large bodies add an entry
in settings rather than raising the default. ``config.serve`` enforces these on the wire and
``deploy/nginx.conf`` repeats them in front (keep the two in step).
"""

from __future__ import annotations

import re

from django.conf import settings

MIB = 1024 * 1024
# Multipart boundaries, part headers and the small fields (title, project) around the file.
UPLOAD_FORM_OVERHEAD = 1 * MIB


def upload_limit() -> int:
    """The largest PDF upload request: the file plus the form around it."""
    return int(settings.MAX_UPLOAD_MB) * MIB + UPLOAD_FORM_OVERHEAD


def body_limit(method: str, path: str) -> int:
    """The most bytes a ``method`` request to ``path`` may send (``None`` in a rule: the upload limit)."""
    for rule_method, rule_path, limit in settings.REQUEST_BODY_LIMITS:
        if re.fullmatch(rule_method, method, re.I) and re.fullmatch(rule_path, path):
            return upload_limit() if limit is None else int(limit)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
