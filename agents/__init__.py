"""Agents and their API keys: who is calling the agent API, and whether they may."""
