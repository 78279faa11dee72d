"""Budgets and LLM cost tracking (SPEC §5)."""
