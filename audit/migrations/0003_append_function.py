"""PostgreSQL: append an audit event in one round trip (`audit_append`).

`record_event` used to take the append lock, read the chain's head and insert the event in three
statements, all inside the lock's critical section. This function does the same three steps in
one call. Being VOLATILE PL/pgSQL, each statement in it takes a fresh snapshot, so the head is
read after the lock is held, exactly as before.

The hash is computed here with the canonical form's bytes that depend on the head (`sequence`,
`occurred_at`) spliced between the parts the caller built (`audit.chain.canonical_parts`):

    hash = sha256(prev_hash || before || occurred_at || middle || sequence || after)

`verify_audit` recomputes every hash in Python, so a difference between the two would show as
a broken chain on the first event written (tests/audit hold them to each other). The lock key is
`audit.services.APPEND_LOCK_KEY`. SQLite keeps the Python path (it has no stored functions).
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

FORWARD = """
CREATE OR REPLACE FUNCTION audit_append(
    p_event_type varchar, p_actor_type varchar, p_actor_id varchar, p_actor_name varchar,
    p_subject_type varchar, p_subject_id varchar, p_payload text,
    p_before text, p_middle text, p_after text
) RETURNS TABLE (sequence bigint, occurred_at timestamptz, prev_hash varchar, hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head record;
    v_sequence bigint := 1;
    v_prev varchar := repeat('0', 64);
    v_at timestamptz;
    v_hash varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(8031166050034607465);
    SELECT e.sequence, e.hash, e.occurred_at INTO head
        FROM audit_auditevent AS e ORDER BY e.sequence DESC LIMIT 1;
    -- The database's clock, read under the lock; never earlier than the head (NTP steps).
    v_at := clock_timestamp();
    IF head.sequence IS NOT NULL THEN
        v_sequence := head.sequence + 1;
        v_prev := head.hash;
        v_at := greatest(v_at, head.occurred_at);
    END IF;
    v_hash := encode(sha256(convert_to(
        v_prev || p_before
        || to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || p_middle || v_sequence::text || p_after,
        'UTF8')), 'hex');
    INSERT INTO audit_auditevent (
        sequence, occurred_at, event_type, actor_type, actor_id, actor_name,
        subject_type, subject_id, payload, prev_hash, hash
    ) VALUES (
        v_sequence, v_at, p_event_type, p_actor_type, p_actor_id, p_actor_name,
        p_subject_type, p_subject_id, p_payload::jsonb, v_prev, v_hash
    );
    RETURN QUERY SELECT v_sequence, v_at, v_prev, v_hash;
END
$$
"""


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [migrations.RunPython(forward, elidable=False)]
