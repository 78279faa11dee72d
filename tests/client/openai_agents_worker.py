"""Runs OpenAI Agents SDK agents under Oversight for tests/client/test_openai_agents_adapter.py,
in a process of its own: this project's Django app `agents` shadows the SDK's top-level package
`agents` wherever the project is on the path, as it is in the test process. Started with
`python -P` (the project off the path), it is where a user's agent would be.

One JSON line in: `{"url", "key", "task", "calls": [[tool, arguments], ...], "loop"}`. The agent
has two tools under Oversight, `shell` (the `run_command` action: a person decides) and `read_file`
(allowed by the seeded policy); a scripted model (no network) makes `calls` in one turn, then
answers "Done.". It runs with `run_with_oversight` when `loop`, else step by step. One JSON line
out: the tools paused in the first run and what they ran before resuming (step by step only),
what they ran in all, what the model was told the calls answered, and the final output.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from agents.testing import (  # type: ignore[import-not-found, unused-ignore]
    ScriptedModel,
    assistant_message,
    function_call,
)

from agents import (  # type: ignore[attr-defined, unused-ignore]
    Agent,
    RunConfig,
    Runner,
    function_tool,
)
from oversight_client import Oversight
from oversight_client.adapters.openai_agents import OversightApprovals, run_with_oversight

NO_TRACES = RunConfig(tracing_disabled=True)


async def scenario(
    url: str, key: str, task: str, calls: list[list[Any]], loop: bool = False
) -> dict[str, Any]:
    ran: list[str] = []

    @function_tool
    def shell(command: str) -> str:
        """Run a shell command."""
        ran.append(command)
        return f"ran: {command}"

    @function_tool
    def read_file(path: str) -> str:
        """Read a file."""
        ran.append(path)
        return "hello"

    model = ScriptedModel(
        [
            [
                function_call(tool, arguments, call_id=f"call_{number}")
                for number, (tool, arguments) in enumerate(calls, 1)
            ],
            [assistant_message("Done.")],
        ]
    )
    with Oversight(url, key) as oversight:
        approvals = OversightApprovals(oversight, actions={"shell": "run_command"})
        agent = Agent(
            name="ops", model=model, tools=[approvals.protect(shell), approvals.protect(read_file)]
        )
        if loop:
            result = await run_with_oversight(
                agent, task, oversight=approvals, run_config=NO_TRACES
            )
            paused, ran_before_resume = None, None
        else:  # run_with_oversight's loop, step by step, to see the pause
            result = await Runner.run(agent, task, run_config=NO_TRACES)
            paused = [item.tool_name for item in result.interruptions]
            ran_before_resume = list(ran)
            while result.interruptions:
                state = await approvals.resolve(result)
                result = await Runner.run(agent, state, run_config=NO_TRACES)
    last = model.last_call
    return {
        "paused": paused,
        "ran_before_resume": ran_before_resume,
        "ran": ran,
        "answers": [item["output"] for item in last.input if "output" in item] if last else [],
        "final_output": result.final_output,
    }


def main() -> None:
    for line in sys.stdin:
        asked = json.loads(line)
        try:
            answer = asyncio.run(scenario(**asked))
        except Exception as error:  # the test shows it
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
