"""Slack's door: the interactions endpoint Slack posts clicks to, and the page where a signed-in
person confirms the link of their Slack account (`slack.services`)."""

from __future__ import annotations

import json
import logging
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from slack import interactions as doors
from slack import services, signature, web
from slack.models import SlackInteraction, SlackLink

logger = logging.getLogger(__name__)


@csrf_exempt  # Slack signs its requests instead (checked first thing)
@login_not_required
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    """`POST /integrations/slack/interactions`: a verified, fresh, first-seen interaction is
    acted on; anything else is refused before its payload is read."""
    if not web.configured():
        raise Http404("Slack is not configured.")
    sent = request.headers.get("X-Slack-Signature")
    refused = signature.problem(
        secret=settings.OVERSIGHT_SLACK_SIGNING_SECRET,
        timestamp=request.headers.get("X-Slack-Request-Timestamp"),
        signature=sent,
        body=request.body,
        now=time.time(),
    )
    if refused is not None:
        logger.warning("Slack interaction refused: %s", refused)
        return HttpResponse(f"Refused: {refused}.", status=401, content_type="text/plain")
    assert sent is not None
    try:
        with transaction.atomic():
            SlackInteraction.objects.create(signature=sent[:100])
    except IntegrityError:
        logger.warning("Slack interaction refused: replayed")
        return HttpResponse("Refused: replayed.", status=409, content_type="text/plain")
    try:
        payload = json.loads(request.POST.get("payload", ""))
        if not isinstance(payload, dict):
            raise ValueError("not an object")
        answer = doors.handle(payload)
    except (ValueError, doors.Malformed) as exc:
        logger.warning("Slack interaction not understood: %s", exc)
        return HttpResponse("Not understood.", status=400, content_type="text/plain")
    if answer is None:
        return HttpResponse(status=200)
    return JsonResponse(answer)


@require_http_methods(["GET", "POST"])
def link_account(request: HttpRequest) -> HttpResponse:
    """`/integrations/slack/link`: the signed-in person's Slack link; with a token from Slack
    (`?token=`), the confirmation that links that Slack account to them."""
    user = request.user
    assert isinstance(user, User)
    token = request.POST.get("token") or request.GET.get("token") or ""
    slack_user = team = ""
    problem = ""
    if token:
        try:
            slack_user, team = services.read_link_token(token)
        except signing.BadSignature:
            problem = (
                f"This link is not valid any more (it lasts {services.LINK_LASTS}). "
                "Click in Slack again."
            )
    if request.method == "POST":
        if request.POST.get("unlink"):
            if services.unlink(user=user, actor=user):
                messages.success(request, "Your Slack account is no longer linked.")
            return redirect("slack:link")
        if slack_user:
            profile = doors.user_profile(slack_user)
            if profile is None:
                problem = "Slack did not say who this account is; try again in a moment."
            else:
                problem = (
                    services.confirm_link(
                        user=user, slack_user_id=slack_user, team_id=team, profile=profile
                    )
                    or ""
                )
            if not problem:
                messages.success(
                    request, f"Slack user {slack_user} now acts as you. Click in Slack again."
                )
                return redirect("slack:link")
    current = SlackLink.objects.filter(user=user).first()
    return render(
        request,
        "slack/link.html",
        {
            "current": current,
            "slack_user": slack_user,
            "team": team,
            "token": token if slack_user else "",
            "problem": problem,
        },
        status=400 if problem and request.method == "POST" else 200,
    )
