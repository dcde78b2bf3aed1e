"""Domain errors of sign-in, rendered in the envelope by ``config.errors.exception_handler``."""

from __future__ import annotations

from typing import Any

from config.errors import DomainError, ValidationFailed

INVALID_CODE_MESSAGE = "The code is invalid or has expired."


class AuthenticationError(DomainError):
    """401 ``authentication_failed``, with the ``WWW-Authenticate`` challenge HTTP asks for."""

    status_code, code, default_message = 401, "authentication_failed", "Authentication failed."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="api"'})
        super().__init__(message, **kwargs)


class InvalidCredentials(AuthenticationError):
    """One message for an unknown e-mail, a wrong password and an inactive account."""

    default_message = "Invalid email or password."


class InvalidToken(AuthenticationError):
    default_message = "The token is invalid, expired or revoked."


class SignupClosed(DomainError):
    status_code, code, default_message = 403, "permission_denied", "Sign-up is closed for this tenant."


def invalid_code() -> ValidationFailed:
    """The one error for a wrong, expired, used-up or other-tenant code."""
    return ValidationFailed(INVALID_CODE_MESSAGE, details={"fields": {"code": [INVALID_CODE_MESSAGE]}})
