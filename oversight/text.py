"""Text from outside that must stay on one line: the names agents choose (an action, a model)
and what admins type (a team), wherever they land in an email subject, a log line or a page.

One definition of what breaks a line, used twice: the API and the forms refuse it in names
(`oversight.fields.SingleLineField`, the policy file), and every email subject is built by
`email_subject`, which replaces it, so that a row stored before the refusal (or text no one
checked) cannot make a message unsendable: a header may not hold a line break, and the mailer
refuses the whole message, on every attempt, until the outbox gives up.
"""

from __future__ import annotations

import re

# C0 and C1 control characters, DEL, and Unicode's line and paragraph separators: everything
# `str.splitlines()` splits on (Python's email refuses a header that splits: \v, \f, \x1c-\x1e,
# NEL and U+2028 too, not only CR and LF), and the characters that steer a terminal.
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL_CHARACTERS = re.compile(f"[{CONTROL_CLASS}]+")
CONTROL_MESSAGE = "No control characters or line breaks (newline, tab, U+2028, ...)."

SUBJECT_PREFIX = "[Oversight] "
# A quoted value (an action, a message) keeps its first characters; the subject as a whole
# stays well inside what mail clients show and the 998-character line limit of RFC 5322.
SUBJECT_VALUE_LENGTH = 120
SUBJECT_LENGTH = 200


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None


def one_line(text: str, limit: int) -> str:
    """`text` with each run of control characters and line breaks made one space, at most
    `limit` characters long (cut ones end with "…")."""
    flat = CONTROL_CHARACTERS.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def email_subject(template: str, **values: object) -> str:
    """The subject of an email the product sends: "[Oversight] " and `template` filled with
    `values`, each put on one line and cut to SUBJECT_VALUE_LENGTH, the whole to
    SUBJECT_LENGTH. Pass the text from outside (names, messages) as `values`, never as part
    of `template`: `email_subject("Escalated: {action}", action=request.action)`."""
    filled = template.format(
        **{name: one_line(str(value), SUBJECT_VALUE_LENGTH) for name, value in values.items()}
    )
    return one_line(SUBJECT_PREFIX + filled, SUBJECT_LENGTH)


def duration(seconds: float | None) -> str:
    """A span of time as people read it on the pages and in reports: 4m 05s, 2h 10m, 3d 4h."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole}s"
