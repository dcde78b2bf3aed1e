"""Refuse TRUNCATE of ``audit_auditevent`` too.

0002's row trigger guards UPDATE and DELETE, but row triggers do not fire on TRUNCATE, which empties
the table without a DELETE (any role with the TRUNCATE privilege may: the table's owner, which is
the application's own role). This statement trigger raises the same error (SQLSTATE 42501) for
every TRUNCATE, with no way out: the retention purge deletes, it never truncates. ``manage.py flush``
therefore fails on a database with this migration. The test suite empties its tables with TRUNCATE
between transactional tests; its own database backend (``tests/db_backend``) disables this trigger
around its flush, in the flush's transaction, which only the owner may do.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION audit_auditevent_no_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: TRUNCATE refused' USING ERRCODE = '42501';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_auditevent_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_auditevent_no_truncate();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_auditevent_no_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_auditevent_no_truncate();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
