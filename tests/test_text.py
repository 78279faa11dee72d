"""One line of outside text (`oversight.text`): the rule names keep to, and email subjects."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from oversight.text import SUBJECT_LENGTH, email_subject, has_control_characters, one_line


@pytest.mark.parametrize(
    ("text", "breaks"),
    [
        ("deploy_to_production", False),
        ("déployer: ünïcode, spaces and \u200b are fine", False),
        *((f"a{c}b", True) for c in "\n\r\t\v\f\x00\x1c\x1d\x1e\x7f\x85\x9b\u2028\u2029"),
    ],
)
def test_control_characters_and_every_line_break_python_knows_are_caught(text, breaks):
    assert has_control_characters(text) is breaks
    # The rule matches what splits a header: what str.splitlines() splits on is caught.
    assert len(text.splitlines()) <= 1 or breaks


def test_one_line_makes_each_run_of_them_one_space_and_cuts_long_text():
    assert one_line("  deploy\r\n\u2028now\t ", 50) == "deploy now"
    assert one_line("x" * 10, 10) == "x" * 10
    assert one_line("x" * 11, 10) == "x" * 9 + "…"


def test_a_subject_quotes_outside_text_on_one_line_and_within_bounds():
    subject = email_subject("Escalated: {action} ({agent})", action="a\nb" + "c" * 500, agent="x")
    assert subject.startswith("[Oversight] Escalated: a bcccc")
    assert subject.endswith("… (x)"), "a long value is cut, the template's words survive"
    assert len(subject) <= SUBJECT_LENGTH
    assert len(email_subject("{a} {b}", a="y" * 10_000, b="z" * 10_000)) == SUBJECT_LENGTH
    # The mailer takes it (it refuses a header holding any line break).
    EmailMessage(subject=subject, body="", to=["a@example.com"]).message()


def test_braces_in_the_values_are_text_not_placeholders():
    assert email_subject("Alert: {message}", message="{0} {x}") == "[Oversight] Alert: {0} {x}"
