"""`make soak`: ten minutes of steady, mixed traffic against the production-shaped processes, to
find what only time finds: memory that grows, timers that drift, an outbox that falls behind, a
rare 5xx. Not part of CI.

It starts what `make bench` starts (tools.stack: PostgreSQL and Redis from DATABASE_URL /
REDIS_URL or on localhost, a scratch database `<name>_soak`, Redis database 11, DEBUG off) plus
the worker and beat, exactly as `make web`, `make worker` and `make beat` start them. Eight
agents and two people are seeded; a local receiver takes the callbacks and an SMTP sink the
emails. Then, at a steady rate sized for two cores (about 22 calls a second, `--rate` scales
it): guardrail checks, creates (short timers that escalate and expire throughout, long ones
that a person decides on the request page, some with callback URLs), long-polls (`?wait=`),
reads, lists, cancels and cost reports (those of approved requests reconcile their estimate),
with a real browser (Debian's Chromium) holding an approver's live inbox open the whole time.
The agent API has no outcome reports yet (`POST /api/v1/outcomes`, SPEC §3): not sent.

At the start, half-way and the end it records the RSS of every process (each tree walked in
/proc, so every worker pool and child is found) and the outbox's backlog; at the end it reads
back how late each timer fired (audit events against deadlines), which callbacks arrived, and
whether the browser's live inbox still matches a fresh load of the page. It prints a table and
one verdict per target, and exits non-zero when one fails.
"""

from __future__ import annotations

AGENTS = 8
TEAM = "soak"
PASSWORD = "soak-harbour-violet-lantern-42"  # noqa: S105 - throwaway people, scratch database
LEAD = "soak-lead"  # team lead: the browser's inbox
MANAGER = "soak-manager"  # engineering manager (and manager): decides on the request pages
