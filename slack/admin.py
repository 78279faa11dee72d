"""Admin: the channel of each tier is editable; links are made and removed through
`slack.services` (audited as changes of the person's access); the outbox is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from oversight.admin import ReadOnlyAdmin
from slack import delivery, services
from slack.models import LinkMethod, SlackChannel, SlackDelivery, SlackLink


@admin.register(SlackChannel)
class SlackChannelAdmin(admin.ModelAdmin):
    list_display = ("tier", "channel_id", "updated_at")
    fields = ("tier", "channel_id")

    def save_model(self, request: HttpRequest, obj: SlackChannel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        delivery.forget_channels()


@admin.register(SlackLink)
class SlackLinkAdmin(admin.ModelAdmin):
    list_display = ("slack_user_id", "user", "method", "created_at")
    search_fields = ("slack_user_id", "user__username", "user__email")
    fields = ("user", "slack_user_id", "slack_team_id")
    autocomplete_fields = ("user",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a link is made or removed, never re-pointed in place

    def save_model(self, request: HttpRequest, obj: SlackLink, form: Any, change: bool) -> None:
        actor = request.user
        assert isinstance(actor, User)
        linked = services.link(
            user=obj.user,
            slack_user_id=obj.slack_user_id,
            team_id=obj.slack_team_id,
            method=LinkMethod.ADMIN,
            actor=actor,
        )
        obj.pk = linked.pk

    def delete_model(self, request: HttpRequest, obj: SlackLink) -> None:
        actor = request.user
        assert isinstance(actor, User)
        services.unlink(user=obj.user, actor=actor)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SlackLink]) -> None:
        for link in queryset.select_related("user"):
            self.delete_model(request, link)


@admin.register(SlackDelivery)
class SlackDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "kind",
        "request",
        "channel_id",
        "status",
        "attempts",
        "last_error",
    )
    list_filter = ("kind", "status")
