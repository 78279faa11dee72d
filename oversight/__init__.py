"""Oversight: the human-oversight control plane for autonomous AI agents."""

from __future__ import annotations

from oversight.celery import app as celery_app

__all__ = ["celery_app"]
