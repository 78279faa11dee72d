"""Adapters that put an agent SDK's tool calls under Oversight.

- `oversight_client.adapters.openai_agents`: the OpenAI Agents SDK (`pip install
  "oversight-client[openai-agents]"`): a `needs_approval` gate, tools whose approved calls run
  with the approver's arguments and send their receipts, and interruptions resolved from the
  decisions people make in Oversight.
- `oversight_client.adapters.langgraph`: LangChain v1 / LangGraph (`pip install
  "oversight-client[langgraph]"`): `HumanInTheLoopMiddleware` interrupts answered by Oversight.

Each adapter imports its SDK itself, so `import oversight_client` never needs the extras. Here:
`ToolCall`, what a `justification=` function is given, and `default_justification`.
"""

from __future__ import annotations

from oversight_client.adapters._common import ToolCall, default_justification

__all__ = ["ToolCall", "default_justification"]
