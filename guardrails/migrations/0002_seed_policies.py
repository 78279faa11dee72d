"""The seed document's eight action policies (its GuardrailSystem defaults), each as version 1.

Its SAFE risk level is `low` here (SPEC §6). Admins change them in the admin or with
`manage.py policies import`; this migration never changes a policy that exists.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

NOTE = "the seed document's defaults (migration)"

POLICIES: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read operations: generally safe, but never credentials or keys.",
        "category": "read",
        "risk_level": "low",
        "requires_approval": False,
        "forbidden_patterns": [r"\.env$", r"id_rsa$", r"\.pem$", "password", "secret"],
    },
    {
        "name": "write_file",
        "description": "Write operations: never system files, root's home or Git config.",
        "category": "write",
        "risk_level": "medium",
        "requires_approval": True,
        "forbidden_patterns": ["^/etc/", "^/root/", r"\.git/config$"],
        "rate_limit_per_hour": 100,
    },
    {
        "name": "run_command",
        "description": "Executing commands: high risk; never destructive system commands.",
        "category": "execute",
        "risk_level": "high",
        "requires_approval": True,
        "forbidden_patterns": [
            r"rm\s+-rf\s+/",
            r"dd\s+if=",
            "mkfs",
            "shutdown",
            "reboot",
            "killall",
        ],
        "rate_limit_per_hour": 50,
    },
    {
        "name": "database_query",
        "description": "Reading from a database.",
        "category": "database",
        "risk_level": "medium",
        "requires_approval": False,
        "rate_limit_per_hour": 1000,
    },
    {
        "name": "database_mutation",
        "description": "Changing a database: never dropping, truncating or unfiltered deletes.",
        "category": "database",
        "risk_level": "high",
        "requires_approval": True,
        "forbidden_patterns": [
            r"DROP\s+DATABASE",
            r"DROP\s+TABLE",
            "TRUNCATE",
            r"DELETE\s+FROM.*WHERE\s+1=1",
        ],
        "rate_limit_per_hour": 100,
    },
    {
        "name": "deploy_to_production",
        "description": "Production deployments: critical, two approvals.",
        "category": "deploy",
        "risk_level": "critical",
        "requires_approval": True,
        "rate_limit_per_hour": 10,
    },
    {
        "name": "delete_resource",
        "description": "Destructive operations: critical, two approvals.",
        "category": "delete",
        "risk_level": "critical",
        "requires_approval": True,
        "rate_limit_per_hour": 20,
    },
    {
        "name": "external_api_call",
        "description": "Calls to outside services: at most $1.00 a call.",
        "category": "external_api",
        "risk_level": "medium",
        "requires_approval": False,
        "max_cost_cents": 100,
        "rate_limit_per_hour": 500,
    },
]

DEFAULTS: dict[str, Any] = {
    "scope": "global",
    "team": "",
    "agent": "",
    "description": "",
    "requires_approval": False,
    "forbidden_patterns": [],
    "allowed_resources": [],
    "max_cost_cents": None,
    "rate_limit_per_hour": None,
    "sensitive": False,
    "params_schema": None,
    "enabled": True,
}


def seed(apps: Any, schema_editor: Any) -> None:
    Policy = apps.get_model("guardrails", "Policy")
    PolicyVersion = apps.get_model("guardrails", "PolicyVersion")
    for given in POLICIES:
        fields = {**DEFAULTS, **given}
        if Policy.objects.filter(name=fields["name"], scope="global").exists():
            continue
        model_fields = {key: value for key, value in fields.items() if key != "agent"}
        policy = Policy.objects.create(version=1, **model_fields)
        PolicyVersion.objects.create(
            policy=policy,
            name=policy.name,
            scope="global",
            version=1,
            change="created",
            snapshot=fields,
            note=NOTE,
        )


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
