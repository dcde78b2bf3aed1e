"""The test suite's database backend: the production one (``config.db_backend``: django-prometheus over
PostgreSQL), whose flush may also empty the audit log.

``TransactionTestCase`` (pytest-django's ``transactional_db``) empties every table after each test
with one ``TRUNCATE``, which the audit log refuses (``audit/migrations/0003_no_truncate_trigger.py``).
This flush disables that trigger before its ``TRUNCATE`` and enables it again after, in the one
transaction Django runs the flush in: only the table's owner may, it rolls back with a failed flush,
and the trigger is on again for the next test. Production keeps the plain backend, so
``manage.py flush`` there fails on the audit table (tests/audit/test_audit.py checks both).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations

from config.db_backend import base

AUDIT_TABLE = "audit_auditevent"
NO_TRUNCATE_TRIGGER = "audit_auditevent_no_truncate"


class DatabaseOperations(PostgresOperations):
    def sql_flush(
        self, style: Any, tables: list[str], *, reset_sequences: bool = False, allow_cascade: bool = False
    ) -> list[str]:
        """Django's flush, with the audit log's TRUNCATE trigger off around it when the audit table is emptied."""
        statements = super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        if not statements or AUDIT_TABLE not in tables:
            return statements
        table, trigger = self.quote_name(AUDIT_TABLE), self.quote_name(NO_TRUNCATE_TRIGGER)
        return [
            f"ALTER TABLE {table} DISABLE TRIGGER {trigger};",
            *statements,
            f"ALTER TABLE {table} ENABLE TRIGGER {trigger};",
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
