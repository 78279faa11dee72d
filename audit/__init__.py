"""The tamper-evident audit trail (SPEC §7)."""
