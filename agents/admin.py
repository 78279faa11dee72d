"""Admin for agents: every change goes through `agents.services`, with the checks and audit
events of the pages and commands. What only a service may set (status, the two-person
re-enable, keys, the webhook secret) is read-only here; new secrets are shown once, in a
message, and the webhook secret itself is never shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Role
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


class AgentAdminForm(forms.ModelForm):
    self_approval_reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when you change whether self-approval is allowed; it is audited.",
    )

    class Meta:
        model = Agent
        fields = ("name", "owner", "team", "allow_self_approval")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            self.instance.pk
            and "allow_self_approval" in self.changed_data
            and not data.get("self_approval_reason", "").strip()
        ):
            self.add_error("self_approval_reason", "Say why.")
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ("name", "team", "owner", "status", "allow_self_approval", "created_at")
    list_filter = ("status", "team", "allow_self_approval")
    search_fields = ("name", "team", "owner__username")
    readonly_fields = (
        "status",
        "status_reason",
        "status_changed_at",
        "reenable_requested_by",
        "reenable_requested_at",
        "reenable_reason",
        "webhook_secret_rotated_at",
        # Changed on the agent's page or by `set_autonomy` (audited), and by the breaker.
        "autonomy_level",
        "autonomy_by_category",
        "autonomy_trial_until",
        "consecutive_failures",
        "breaker_opened_at",
        "created_at",
    )
    inlines = [ApiKeyInline]
    actions = ["issue_key", "rotate_webhook_secret"]

    def get_fields(self, request: HttpRequest, obj: Agent | None = None) -> Any:
        if obj is None:  # a new agent: self-approval is an exception made afterwards
            return ["name", "owner", "team"]
        return [
            "name",
            "owner",
            "team",
            "allow_self_approval",
            "self_approval_reason",
            *self.readonly_fields,
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Agent | None = None) -> list[str]:
        fields = list(self.readonly_fields)
        if obj is not None:
            fields.append("name")  # the name is in every log line and key listing: fixed
            if not request.user.has_role(Role.ADMIN):  # type: ignore[union-attr]
                fields += ["allow_self_approval", "self_approval_reason"]
        return fields

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        return form.save(commit=False)  # save_model writes, through the services

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        actor = request.user
        data = form.cleaned_data
        if not change:
            # The service makes its webhook secret: shown here once, like a new key.
            created, secret = services.create_agent(
                name=data["name"],
                owner=data["owner"],
                team=data["team"],
                actor=actor,  # type: ignore[arg-type]
            )
            obj.pk, obj.created_at = created.pk, created.created_at
            obj.webhook_secret_encrypted = created.webhook_secret_encrypted
            self.message_user(
                request,
                f"Webhook secret of {created.name} (copy it now, it is not shown again): {secret}",
                messages.WARNING,
            )
            return
        services.change_agent(agent=obj, owner=data["owner"], team=data["team"], actor=actor)  # type: ignore[arg-type]
        if "allow_self_approval" in form.changed_data:
            services.set_self_approval(
                agent=obj,
                allowed=data["allow_self_approval"],
                reason=data["self_approval_reason"],
                actor=actor,  # type: ignore[arg-type]
            )

    def has_delete_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False  # disable it instead (kill switch): its requests and trail stay

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
    readonly_fields = fields  # a key's record is what the services wrote; revoke it below
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
