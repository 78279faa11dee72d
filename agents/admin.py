"""Admin for agents: create, edit, issue or revoke API keys and rotate webhook secrets through
the services. Secrets are shown once, in a message; the webhook secret is neither shown nor
editable here (its fields are not editable)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents import services
from agents.models import Agent, ApiKey


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "label", "created_at", "created_by", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False  # keys are issued by the action, which shows the secret once


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "owner", "status", "created_at")
    list_filter = ("status", "team")
    search_fields = ("name", "team", "owner__username")
    readonly_fields = (
        "status",
        "status_reason",
        "status_changed_at",
        "webhook_secret_rotated_at",
        "created_at",
    )
    inlines = [ApiKeyInline]
    actions = ["issue_key", "rotate_webhook_secret"]

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        if change:
            # Only what the form edits: writing back the whole row as it was read could undo a
            # rotation of the webhook secret (or a pause) committed in the meantime.
            obj.save(update_fields=form.changed_data)
            return
        # A new agent is registered by the service (checked, audited), which makes its webhook
        # secret: shown here once, like a new key.
        agent, secret = services.create_agent(
            name=obj.name,
            owner=obj.owner,
            team=obj.team,
            actor=request.user,  # type: ignore[arg-type]
        )
        obj.pk, obj.created_at = agent.pk, agent.created_at
        obj.webhook_secret_encrypted = agent.webhook_secret_encrypted
        self.message_user(
            request,
            f"Webhook secret of {agent.name} (copy it now, it is not shown again): {secret}",
            messages.WARNING,
        )

    @admin.action(description="Issue a new API key (shown once)")
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            _, plaintext = services.issue_api_key(agent=agent, created_by=request.user)  # type: ignore[arg-type]
            self.message_user(
                request,
                f"New key for {agent.name} (copy it now, it is not shown again): {plaintext}",
                messages.WARNING,
            )

    @admin.action(description="Rotate the webhook secret (the new one shown once)")
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            secret = services.rotate_webhook_secret(agent=agent, actor=request.user)  # type: ignore[arg-type]
            self.message_user(
                request,
                f"New webhook secret for {agent.name} (copy it now, it is not shown again): "
                f"{secret}",
                messages.WARNING,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "agent", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "agent__name")
    readonly_fields = (
        "agent",
        "prefix",
        "secret_hash",
        "created_at",
        "created_by",
        "revoked_at",
        "revoked_by",
        "last_used_at",
    )
    fields = (
        "agent",
        "prefix",
        "label",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the record of a key stays

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(
            services.revoke_api_key(api_key=key, revoked_by=request.user)  # type: ignore[arg-type]
            for key in queryset
        )
        self.message_user(request, f"Revoked {revoked} key(s).")
