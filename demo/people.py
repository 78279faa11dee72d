"""The demo people `seed_demo` creates and `make run` prints (plain data, no Django imports)."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_PASSWORD = "oversight-demo"  # noqa: S105 - published on purpose for the demo


@dataclass(frozen=True)
class DemoPerson:
    username: str
    first_name: str
    last_name: str
    roles: tuple[str, ...]
    tier: str = ""

    @property
    def summary(self) -> str:
        roles = " + ".join(self.roles)
        return f"{roles}, tier {self.tier}" if self.tier else roles


DEMO_PEOPLE = (
    DemoPerson("admin", "Ada", "Admin", ("admin",)),
    DemoPerson("lead", "Lee", "Lead", ("approver",), "team_lead"),
    DemoPerson("manager", "Mona", "Manager", ("approver", "manager"), "engineering_manager"),
    DemoPerson("director", "Dara", "Director", ("approver", "manager"), "director"),
    DemoPerson("vp", "Val", "Vice-President", ("approver", "manager"), "vp_engineering"),
    DemoPerson("auditor", "Aud", "Itor", ("compliance",)),
)

# The agents, each owned by a person who then may not approve its requests (SPEC §2). The first
# two carry the demo's requests, checks and spend; the others show one agent-control state each
# (`demo.controls`).
DEMO_AGENTS = (
    ("deploy-bot", "lead", "platform"),
    ("support-agent", "manager", "customer-success"),
    ("etl-runner", "lead", "data"),  # its circuit breaker is open: 3 failures in a row
    ("billing-sync", "lead", "data"),  # paused by its circuit breaker: 5 failures in a row
    ("warehouse-loader", "manager", "data"),  # autonomy lowered after a critical failure
    ("research-agent", "director", "research"),  # disabled: it executed what was not approved
    ("triage-bot", "manager", "customer-success"),  # level 3, its record recommends a raise
    ("docs-bot", "lead", "platform"),  # on a 30-day trial one level up
    ("desktop-assistant", "manager", "platform"),  # calls tools through the MCP gateway
)
