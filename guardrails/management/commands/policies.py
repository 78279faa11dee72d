"""`manage.py policies (export | import FILE [--dry-run] | test ACTION --params JSON ...)`
(SPEC §6, §11): policies as code, and the simulator from the command line."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from agents.models import Agent
from guardrails import policies as policy_changes
from guardrails import policyfile, services
from guardrails.models import Policy
from oversight.fields import nested_deeper_than


class Command(BaseCommand):
    help = "Export, import (with a dry run against the last week's checks) and test policies."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("export", help="Write every policy as YAML to stdout.")
        load = commands.add_parser("import", help="Make the policies what FILE says.")
        load.add_argument("file", help="A policy file (see `export`); - reads stdin.")
        load.add_argument(
            "--dry-run",
            action="store_true",
            help="Change nothing; show the diff and the decisions of the last 7 days' checks "
            "that would change.",
        )
        load.add_argument("--by", metavar="USERNAME", help="Who the audit trail names.")
        test = commands.add_parser("test", help="What the check would answer, recording nothing.")
        test.add_argument("action")
        test.add_argument("--params", default="{}", help="The arguments, as a JSON object.")
        test.add_argument("--agent", help="An agent's name (its policies, budgets, status).")
        test.add_argument("--confidence", type=float)
        test.add_argument("--cost", type=int, help="The estimated cost in cents.")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["command"]
        if command == "export":
            policies = Policy.objects.select_related("agent").order_by("name", "scope", "team")
            self.stdout.write(policyfile.document(policies), ending="")
        elif command == "import":
            self._import(options)
        else:
            self._test(options)

    def _import(self, options: dict[str, Any]) -> None:
        source = options["file"]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {source}: {exc}") from exc
        actor = None
        if options["by"]:
            actor = User.objects.filter(username=options["by"]).first()
            if actor is None:
                raise CommandError(f"There is no person named {options['by']!r}.")
        try:
            report = policy_changes.import_policies(
                text=text,
                actor=actor,
                dry_run=options["dry_run"],
                source=f"policies import {Path(source).name}"[:300],
            )
        except policyfile.FileProblem as exc:
            raise CommandError("The file is not applied:\n" + "\n".join(exc.problems)) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if not report.changes:
            self.stdout.write("No changes: the policies are what the file says.")
        for change in report.changes:
            for line in change.lines():
                self.stdout.write(line)
        if report.replay is not None:
            self.stdout.write("")
            for line in report.replay.lines():
                self.stdout.write(line)
            self.stdout.write("Dry run: nothing was changed.")
        elif report.changes:
            self.stdout.write(f"Applied {len(report.changes)} change(s) in one transaction.")

    def _test(self, options: dict[str, Any]) -> None:
        try:
            params = json.loads(options["params"], parse_constant=_refuse)
        except (ValueError, RecursionError) as exc:
            raise CommandError(f"--params is not JSON: {exc}") from exc
        if not isinstance(params, dict) or nested_deeper_than(params):
            raise CommandError("--params must be a JSON object (nested at most 64 levels).")
        if options["confidence"] is not None and not 0 <= options["confidence"] <= 1:
            raise CommandError("--confidence is from 0 to 1.")
        if options["cost"] is not None and options["cost"] < 0:
            raise CommandError("--cost is a number of cents, at least 0.")
        agent = None
        if options["agent"]:
            agent = Agent.objects.filter(name=options["agent"]).first()
            if agent is None:
                raise CommandError(f"There is no agent named {options['agent']!r}.")
        try:
            outcome = services.simulate(
                agent=agent,
                action=options["action"],
                params=params,
                estimated_cost_cents=options["cost"],
                confidence=options["confidence"],
            )
        except services.InvalidParams as exc:
            raise CommandError(f"--params: {exc}") from exc
        verdict = outcome.verdict
        policy = verdict.policy
        self.stdout.write(f"decision: {verdict.decision}")
        self.stdout.write(f"risk: {verdict.risk_level or '-'}  category: {verdict.category or '-'}")
        self.stdout.write(
            f"policy: {policy.name} v{policy.version} ({policy.scope})" if policy else "policy: -"
        )
        if outcome.rate is not None and not outcome.rate.unavailable:
            self.stdout.write(f"rate: {outcome.rate.used} of {outcome.rate.limit} this hour")
        for reason in verdict.reasons:
            self.stdout.write(f"  {reason.effect:<16} {reason.code}: {reason.message}")
        self.stdout.write(json.dumps(outcome.as_json(), sort_keys=True))


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
