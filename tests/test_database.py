"""How the web processes talk to PostgreSQL: statements a connection runs again and again are
prepared (parsed and planned once), unless the deployment turns that off for its pooler."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import connection

from tests.test_deployment import BASE_DIR, production_env


@pytest.mark.django_db
def test_a_statement_run_repeatedly_on_a_connection_is_prepared():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    with connection.cursor() as cursor:
        for agent_id in range(6):
            cursor.execute("SELECT count(*) FROM agents_agent WHERE id = %s", [agent_id])
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FROM agents_agent WHERE id = $1%"],
        )
        (prepared,) = cursor.fetchone()
    assert prepared == 1


@pytest.mark.parametrize(("switch", "threshold"), [(None, "5"), ("false", "None")])
def test_prepared_statements_can_be_turned_off_for_a_pooler(switch, threshold):
    extra = {"DATABASE_URL": "postgres://oversight@db.example.com:5432/oversight"}
    if switch is not None:
        extra["OVERSIGHT_DB_PREPARED_STATEMENTS"] = switch
    show = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", show],
        cwd=BASE_DIR,
        env=production_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"'prepare_threshold': {threshold}" in result.stdout
