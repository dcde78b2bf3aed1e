"""Short-lived signed download links of a document's PDF (the console's citations open them in a new tab).

A link is ``/files/<token>``: the document, its tenant and the user it was made for, signed with
the project's key (salted) and a timestamp. It works for ``DOCUMENT_LINK_SECONDS`` and only while the
document exists in that tenant and the user is active in it. A browser opens it directly (no bearer
header to send), and ``#page=N`` after it shows the cited page.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from accounts.models import User
from config.errors import NotFound
from documents.models import Document

SALT = "documents.file-link"


def document_link_make(*, document: Document, user: User) -> str:
    """The path of a signed download link of ``document`` for ``user``."""
    token = signing.dumps({"d": str(document.pk), "t": str(document.tenant_id), "u": str(user.pk)}, salt=SALT)
    return f"/files/{token}"


def document_link_resolve(*, token: str) -> Document:
    """The document a link names; ``NotFound`` when it is forged, expired, or no longer allowed."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.DOCUMENT_LINK_SECONDS)
    except signing.SignatureExpired as exc:
        raise NotFound("This link has expired: open the citation again from the console.") from exc
    except signing.BadSignature as exc:
        raise NotFound("This link is not valid.") from exc
    user_ok = User.objects.filter(
        pk=data.get("u"), tenant_id=data.get("t"), is_active=True, tenant__is_active=True
    ).exists()
    document = Document.objects.filter(pk=data.get("d"), tenant_id=data.get("t")).first()
    if not user_ok or document is None:
        raise NotFound("This link is not valid.")
    return document
