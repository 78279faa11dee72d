"""The check's one Redis round trip: the API call throttle, the policy set's published version,
the hourly rate limit of the action, and the check log, in one Lua script.

Counting in a script makes the limit exact under concurrency: Redis runs one script at a time,
so of 60 simultaneous checks against a limit of 50, exactly 50 find a free slot. The window is
the clock hour (a fixed window: a burst at the end of one hour and the start of the next may
pass up to twice the limit within sixty minutes; the count starts again at each full hour).

Only a call that nothing else denies uses up a slot. A check that answers require_approval also
holds its slot for the approval request that usually follows (same agent, action and
arguments, within `HOLD_SECONDS`): that create does not count a second time, so an agent that
checks before it asks is not counted twice for one action.

Budgets: an allowed check with an estimate holds it against each enforced budget of the agent
for `BUDGET_HOLD_MINUTES` (in per-minute counters), so simultaneous checks cannot together
pass a limit: each sees the room the database reports less what the others hold. Holds lapse
by themselves; a cost reported meanwhile counts twice for those minutes, which only errs on the
side of refusing. An approval request does not look at holds: it reserves its estimate in the
database (`budgets.admission`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from redis.commands.core import Script

from budgets.admission import Room
from oversight.redis_clients import quick_client

HOLD_SECONDS = 600
# Loop detection's window (SPEC §6): the repeated calls must fall within it.
LOOP_SECONDS = 600
BUDGET_HOLD_MINUTES = 5
CHECK_LOG = "oversight:guard:checks"
# Beat drains the log every tick; this many entries are kept while it does not (a minute of
# checks at full speed, 80 MB at most with arguments of 4 KB).
CHECK_LOG_LENGTH = 20_000

# KEYS: 1 API calls this minute, 2 policy version, 3 action count this hour, 4 held slot,
#       5 check log, 6 keyring version, 7 the agent's recent calls (loop detection), then for
#       each budget its BUDGET_HOLD_MINUTES per-minute holds (this minute's last).
# ARGV: 1 API call limit (0: not counted), 2 its window, 3 the policy version the caller holds,
#       4 the action's limit (-1: none; 0 admits no call), 5 seconds to the end of the hour,
#       6 mode (peek, count, hold, create), 7 hold seconds, 8 log (1/0), 9 log length,
#       10 decision, 11 codes, 12 the estimate in cents, 13 how many budgets (B), 14 the
#       keyring version of the caller's copy of its key ('': read from the database), 15 the
#       time (seconds), 16 the call's digest for loop detection ('': not tracked), 17...
#       each budget's room in whole cents (`whole_cents_left`), 17+B... the log entry's fields.
# Returns {API calls, published version ('' when Redis has none), used, outcome, budget,
# published keyring version, loop}: outcome is 1 admitted, 0 refused, 2 admitted by the slot
# its check held, -1 the caller's policies are stale (nothing was counted), -2 throttled
# (nothing else was done), -3 the caller's copy of its key was read at another version than
# the published one, or Redis has none (nothing was done); budget is the number of the budget
# whose room the estimate passes, with what others hold, or 0; loop is 1 when this call makes
# a loop (the same digest three times in a row, or A-B-A-B, within LOOP_SECONDS), 2 when it
# does as the create that follows its own check (that check had the loop already); such a
# call holds its slot instead of using it, as a require_approval does.
_SCRIPT = """
local keyring = redis.call('GET', KEYS[6]) or ''
if ARGV[14] ~= '' and keyring ~= ARGV[14] then
  return {0, '', 0, -3, 0, keyring}
end
local calls = 0
if ARGV[1] ~= '0' then
  calls = redis.call('INCR', KEYS[1])
  if calls == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  if calls > tonumber(ARGV[1]) then return {calls, '', 0, -2, 0, keyring} end
end
local version = redis.call('GET', KEYS[2]) or ''
if version ~= ARGV[3] then return {calls, version, 0, -1, 0, keyring} end
local mode = ARGV[6]
local estimate = tonumber(ARGV[12])
local budgets = tonumber(ARGV[13])
local minutes = (#KEYS - 7) / math.max(budgets, 1)
local over = 0
if estimate > 0 and mode ~= 'create' then
  for b = 1, budgets do
    local held = 0
    for m = 1, minutes do
      held = held + tonumber(redis.call('GET', KEYS[7 + (b - 1) * minutes + m]) or '0')
    end
    if held + estimate > tonumber(ARGV[16 + b]) then
      over = b
      break
    end
  end
end
local used, outcome = 0, 1
local limit = tonumber(ARGV[4])
if over > 0 and mode ~= 'peek' then mode = 'peek' end
local loop = 0
if ARGV[16] ~= '' then
  local now, digest = tonumber(ARGV[15]), ARGV[16]
  local last = redis.call('LINDEX', KEYS[7], 0)
  local merged = false
  if mode == 'create' and last then
    -- The create that follows its own check is the same call, not a second one: it takes the
    -- check's entry over, once (a second create of it is a call of its own).
    local seen, at, kind = string.match(last, '^(%S+) (%S+) (%S+)$')
    if seen == digest and kind == 'c' and now - tonumber(at) <= tonumber(ARGV[7]) then
      redis.call('LSET', KEYS[7], 0, digest .. ' ' .. at .. ' m')
      merged = true
    end
  end
  if not merged then
    local kind = (mode == 'create') and 'r' or 'c'
    redis.call('LPUSH', KEYS[7], digest .. ' ' .. ARGV[15] .. ' ' .. kind)
    redis.call('LTRIM', KEYS[7], 0, 3)
    redis.call('EXPIRE', KEYS[7], LOOP_SECONDS)
  end
  local recent = {}
  for i, entry in ipairs(redis.call('LRANGE', KEYS[7], 0, 3)) do
    local seen, at = string.match(entry, '^(%S+) (%S+)')
    if now - tonumber(at) > LOOP_SECONDS then break end
    recent[i] = seen
  end
  if recent[3] and recent[1] == recent[2] and recent[2] == recent[3] then
    loop = 1
  elseif recent[4] and recent[1] == recent[3] and recent[2] == recent[4]
      and recent[1] ~= recent[2] then
    loop = 1
  end
  if loop == 1 and mode == 'count' then mode = 'hold' end
  -- A merged create's loop was its check's, which recorded the violation already.
  if loop == 1 and merged then loop = 2 end
end
if limit >= 0 then
  used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if mode == 'create' and redis.call('DEL', KEYS[4]) == 1 then
    outcome = 2
  elseif used >= limit then
    outcome = 0
  elseif mode ~= 'peek' then
    used = redis.call('INCR', KEYS[3])
    if used == 1 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
    if mode == 'hold' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[7]) end
  end
end
if mode == 'count' and outcome == 1 and estimate > 0 then
  for b = 1, budgets do
    local current = KEYS[7 + b * minutes]
    redis.call('INCRBYFLOAT', current, ARGV[12])
    redis.call('EXPIRE', current, minutes * 60 + 60)
  end
end
if ARGV[8] == '1' then
  local decision, codes = ARGV[10], ARGV[11]
  if loop == 1 then
    codes = codes .. ' loop_detected'
    if decision == 'allow' then decision = 'require_approval' end
  end
  if outcome == 0 or over > 0 then
    decision = 'deny'
    if over > 0 then codes = codes .. ' budget_exceeded' end
    if outcome == 0 then codes = codes .. ' rate_limited' end
  end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'decision', decision,
             'codes', codes, unpack(ARGV, 17 + budgets))
end
return {calls, version, used, outcome, over, keyring, loop}
""".replace("LOOP_SECONDS", str(LOOP_SECONDS))


def whole_cents_left(room: Room) -> int:
    """The room as the script compares it: whole cents, rounded down. Estimates and holds are
    whole cents, and for a whole number x, x > room exactly when x > floor(room); Lua's numbers
    are binary doubles, which hold whole numbers exactly but not 999999999.99999999 (it reads
    as 1e9, and two holds of 5e8 ¢ would pass a room they exceed)."""
    return math.floor(room.left_cents)


STALE = -1
THROTTLED = -2
STALE_KEY = -3


@dataclass(frozen=True)
class Answer:
    api_calls: int
    published: int | None  # the policy set's version in Redis
    used: int
    outcome: int
    resets_in_seconds: int
    over_budget: Room | None = None  # the budget the estimate would pass, with the holds
    keyring: int | None = None  # the keyring's version in Redis
    loop: int = 0  # 1: this call repeats the agent's last ones; 2: as its check's create

    @property
    def stale(self) -> bool:
        return self.outcome == STALE

    @property
    def stale_key(self) -> bool:
        return self.outcome == STALE_KEY

    @property
    def throttled(self) -> bool:
        return self.outcome == THROTTLED

    @property
    def admitted(self) -> bool:
        return self.outcome > 0


@cache
def _script() -> Script:
    return quick_client().register_script(_SCRIPT)


def action_key(agent_id: int, action: str, hour: int) -> str:
    return f"oversight:guard:rate:{agent_id}:{hour}:{action}"


def held_key(agent_id: int, params_sha256: str) -> str:
    return f"oversight:guard:held:{agent_id}:{params_sha256}"


def recent_key(agent_id: int) -> str:
    """The agent's last few calls (digest and time), for loop detection."""
    return f"oversight:guard:recent:{agent_id}"


def forget_recent(agent_id: int) -> None:
    """A success ends any loop: the calls before it no longer count (raises when Redis does
    not answer)."""
    quick_client().delete(recent_key(agent_id))


def budget_keys(room: Room, minute: int) -> list[str]:
    """A budget window's per-minute holds for the last BUDGET_HOLD_MINUTES, this one's last."""
    window = int(room.window_start.timestamp())
    return [
        f"oversight:guard:budget:{room.budget_id}:{window}:{at}"
        for at in range(minute - BUDGET_HOLD_MINUTES + 1, minute + 1)
    ]


def count(
    *,
    agent_id: int,
    action: str,
    params_sha256: str,
    api_call: tuple[str, int, int] | None,
    version_key: str,
    holding: int | None,
    keyring: tuple[str, int] | None = None,
    limit: int | None,
    mode: str,
    log: dict[str, Any] | None,
    decision: str,
    codes: list[str],
    estimate: int | None = None,
    rooms: tuple[Room, ...] = (),
    track: str = "",
) -> Answer:
    """One round trip; raises one of `oversight.redis_clients.UNAVAILABLE` when Redis does not
    answer. `api_call` is the throttle's (key, limit, window seconds), or None not to count the
    call; `holding` the policy set version this process holds (None: none yet); `rooms` what
    the agent's enforced budgets have left (`budgets.admission.assess`) for the `estimate`;
    `keyring` the key of the keyring's published version and the version of the caller's copy
    of its key, when it authenticated from one (`agents.keyring`); `track`, the call's digest
    for loop detection (its action as policies look it up), adds it to the agent's recent calls
    and tells whether it makes a loop ('': not tracked)."""
    now = time.time()
    hour = int(now // 3600)
    minute = int(now // 60)
    resets = 3600 - int(now % 3600)
    fields: list[str] = []
    for name, value in (log or {}).items():
        fields += [name, "" if value is None else str(value)]
    throttle_key, throttle_limit, throttle_window = api_call or ("-", 0, 0)
    holds = [key for room in rooms for key in budget_keys(room, minute)]
    reply = _script()(
        keys=[
            throttle_key,
            version_key,
            action_key(agent_id, action, hour),
            held_key(agent_id, params_sha256),
            CHECK_LOG,
            keyring[0] if keyring else "-",
            recent_key(agent_id),
            *holds,
        ],
        args=[
            throttle_limit,
            throttle_window,
            "" if holding is None else str(holding),
            -1 if limit is None else limit,
            resets + 60,  # outlives its hour a little: a late reader still sees the count
            mode,
            HOLD_SECONDS,
            "1" if log is not None else "0",
            CHECK_LOG_LENGTH,
            decision,
            " ".join(codes),
            estimate or 0,
            len(rooms),
            str(keyring[1]) if keyring else "",
            repr(now),
            track,
            *(str(whole_cents_left(room)) for room in rooms),
            *fields,
        ],
    )
    calls, published, used, outcome, over, keyring_published = reply[:6]
    return Answer(
        api_calls=int(calls),
        published=_number(published),
        used=int(used),
        outcome=int(outcome),
        resets_in_seconds=resets,
        over_budget=rooms[int(over) - 1] if int(over) > 0 else None,
        keyring=_number(keyring_published),
        loop=int(reply[6]) if len(reply) > 6 else 0,
    )


def _number(reply: bytes | str | int) -> int | None:
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return int(text) if text else None
