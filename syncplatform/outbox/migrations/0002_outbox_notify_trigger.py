"""On PostgreSQL, every commit that adds outbox rows wakes the relay (LISTEN outbox_message).

A statement-level trigger, so any code path that records work (webhooks, imports, retries)
notifies without an extra round trip; PostgreSQL delivers the notification only when the
transaction commits, and folds duplicates within one transaction into one.
"""

from django.db import migrations

CHANNEL = "outbox_message"

CREATE = f"""
CREATE OR REPLACE FUNCTION outbox_message_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_message_notify
    AFTER INSERT ON outbox_outboxmessage
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS outbox_message_notify ON outbox_outboxmessage;
DROP FUNCTION IF EXISTS outbox_message_notify();
"""


def _on_postgres(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [migrations.RunPython(_on_postgres(CREATE), _on_postgres(DROP), elidable=False)]
