"""Every `OVERSIGHT_*` setting the product reads is in the configuration table
(docs/architecture.md, Configuration): an operator can find each knob, and what it does."""

from __future__ import annotations

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCT = [
    "accounts",
    "agents",
    "approvals",
    "audit",
    "budgets",
    "controls",
    "guardrails",
    "oversight",
]


def settings_read() -> set[str]:
    names: set[str] = set()
    for package in PRODUCT:
        for path in (BASE_DIR / package).rglob("*.py"):
            names |= set(re.findall(r"[\"'](OVERSIGHT_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


def configuration_table() -> str:
    text = (BASE_DIR / "docs" / "architecture.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1]
    return section.split("\n## ", 1)[0]


def test_the_configuration_table_lists_exactly_the_settings_the_code_reads() -> None:
    table = configuration_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(OVERSIGHT_[A-Z0-9_]+)`", row)}
    read = settings_read()
    assert len(read) > 30, read  # the scan found the settings module's reads
    assert read - documented == set(), "read by the code, missing from the table"
    assert documented - read == set(), "in the table, read by nothing"
