"""Seed the load test's tenant on the database of a running ``make run`` (run with its environment).

Creates the tenant ``loadtest`` through the operator's services: an admin (who seeds the first
documents), ``--people`` members who list, upload, search and chat, and ``--sign-in-accounts``
members whose only job is signing in with their password (the admin's). The members who work get an access and
refresh token issued here (``accounts.tokens.tokens_for_user``, what a sign-in returns), so that the
sign-in limit, which counts per client address and every simulated person shares 127.0.0.1, stays
the business of the sign-in users alone. Writes the credentials as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
TENANT_SLUG = "loadtest"


def seed(*, people: int, sign_in_accounts: int) -> dict[str, object]:
    """Create the tenant and its users; return what the locustfile needs to act as them."""
    from accounts.models import User
    from accounts.services import user_create
    from accounts.tokens import tokens_for_user
    from tenants.services import tenant_create

    password = "Load-" + secrets.token_urlsafe(12)
    tenant, admin = tenant_create(
        slug=TENANT_SLUG, name="Load test", admin_email="admin@loadtest.local", admin_password=password
    )
    assert admin is not None
    workers = []
    for index in range(people):
        user = user_create(
            tenant=tenant, email=f"person{index}@loadtest.local", role=User.Role.MEMBER, email_verified=True
        )
        workers.append({"email": user.email, **tokens_for_user(user)})
    signers = []
    for index in range(sign_in_accounts):
        user = user_create(
            tenant=tenant, email=f"signin{index}@loadtest.local", role=User.Role.MEMBER, email_verified=True
        )
        signers.append({"email": user.email, "password": password})
    # The admin's password hash, copied: one argon2 hash instead of one per account (seconds under load).
    User.objects.filter(tenant=tenant, email__startswith="signin").update(password=admin.password)
    return {
        "tenant": tenant.slug,
        "admin": {"email": admin.email, **tokens_for_user(admin)},
        "people": workers,
        "sign_in": signers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--sign-in-accounts", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    credentials = seed(people=args.people, sign_in_accounts=args.sign_in_accounts)
    args.out.write_text(json.dumps(credentials, indent=2))
    args.out.chmod(0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
