"""Approval requests: the domain rules of SPEC §2 and the agent API of §3."""
