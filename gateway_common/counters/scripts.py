"""The Lua scripts behind `RedisCounterStore`: one per store method, each atomic in Redis.

They mirror `policies.memory_counters.MemoryCounterStore` step for step (same expiry rules,
same order of additions), so the two stores give the same answers; the contract
tests check that on random operation sequences. Numbers travel as strings both
ways: arguments as Python ``repr`` (exact), results as ``%.17g`` (exact for a
double; a plain Lua number reply would be truncated to an integer).

Keys: a window is a hash ``slice start -> amount``; concurrency slots are a sorted
set ``lease -> expiry``; a budget counter is a hash with ``spent``, ``reserved``,
``n`` (leases held), ``next`` (earliest lease expiry, absent when none) and per
lease ``a:<lease>`` (amount) and ``u:<lease>`` (expiry). Every key carries a TTL.
"""

from __future__ import annotations

_COMMON = """
local function fmt(x) return string.format('%.17g', x) end
local DEFAULT_KEEP = 40 * 86400
local function expire_at(key, at)
  -- A counter is kept until `at` (caller's clock). A time already past by the server's clock
  -- (an injected test clock) keeps it for the default period instead of deleting it at once.
  local t = redis.call('TIME')
  local server_now = tonumber(t[1])
  if at <= server_now + 60 then at = server_now + DEFAULT_KEEP end
  redis.call('EXPIREAT', key, math.ceil(at))
end
-- What a check read of a counter can serve its write just after, unless the same key came
-- earlier in this call (a plan naming one counter twice): then the write reads it again.
local function fresh(seen, key)
  if seen[key] then return false end
  seen[key] = true
  return true
end
local function keep_for(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

_WINDOW = """
-- A window's hash: one field per slice (its start, as the caller wrote it) with the amount added
-- in it, plus 't', the running total of the live slices, and 'o', the oldest slice's start (absent
-- when there is none). As `MemoryCounterStore._Window`: the total goes up by what is added and
-- down by each slice that leaves the window, oldest first, and is 0 once none is left. Reading it
-- is one HMGET; the slices are scanned only when one has left the window (once a slice width at
-- most) or a refusal asks when to retry. Scanning every slice on every call (60 of them in a busy
-- one-minute window, four windows a model request) made up most of Redis's time per request.
local function slices(key)
  -- The slices, oldest first: starts (numbers), their fields and their amounts.
  local flat = redis.call('HGETALL', key)
  local starts, fields, amounts = {}, {}, {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    if f ~= 't' and f ~= 'o' then
      local start = tonumber(f)
      starts[#starts + 1] = start
      fields[start] = f
      amounts[start] = tonumber(flat[j + 1])
    end
  end
  table.sort(starts)
  return starts, fields, amounts
end
-- The window at `now`, after dropping the slices that have left it: its total, its oldest slice's
-- start (nil when none) and the amount already in slice `field` (nil when none), read with the
-- same HMGET. A check and the addition after it make three calls at most (HMGET, HSET and,
-- once per new slice, the TTL): every call a script makes costs about as much as its arithmetic.
local function live(key, window, now, field)
  local v = redis.call('HMGET', key, 't', 'o', field)
  if not v[1] then return 0, nil, nil end  -- no such window: every write of a slice writes 't'
  if not v[2] or tonumber(v[2]) + window > now then
    return tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
  end
  local starts, fields, amounts = slices(key)
  local total = tonumber(v[1]) or 0
  local stale, oldest = {}, nil
  for _, start in ipairs(starts) do
    if start + window <= now then
      total = total - amounts[start]
      stale[#stale + 1] = fields[start]
    elseif oldest == nil then
      oldest = start
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if oldest == nil then
    total = 0
    redis.call('HDEL', key, 'o')
  else
    redis.call('HSET', key, 'o', fmt(oldest))
  end
  redis.call('HSET', key, 't', fmt(total))
  local current, start = nil, tonumber(field)
  if v[3] and start and start + window > now then current = tonumber(v[3]) end
  return total, oldest, current
end
-- Nil and the window's state (as `live`) when a hit of `cost` fits; else used and seconds to
-- retry (formatted).
local function refused(key, limit, window, cost, now, field)
  local used, oldest, current = live(key, window, now, field)
  if used < limit and used + cost <= limit then return nil, {used, oldest, current} end
  local starts, _, amounts = slices(key)
  local left = used
  local retry = window
  for _, start in ipairs(starts) do
    left = left - amounts[start]
    if left < limit and left + cost <= limit then
      retry = math.max(start + window - now, 0)
      break
    end
  end
  return fmt(used), fmt(retry)
end
-- Adds `amount` to the slice `field`, given the window's state that `live` read just before
-- (`at`: {total, oldest, amount in the slice}). Only a new slice sets the TTL: the key must
-- outlive its newest slice, which leaves the window `window` after it started, and the TTL set
-- when that slice was first written already covers that.
local function add(key, field, amount, ttl_ms, at)
  local total, oldest, current = at[1], at[2], at[3]
  local start = tonumber(field)
  if oldest and oldest <= start then
    redis.call('HSET', key, field, fmt((current or 0) + amount), 't', fmt(total + amount))
  else
    redis.call('HSET', key, field, fmt((current or 0) + amount), 't', fmt(total + amount), 'o', field)
  end
  if not current then keep_for(key, ttl_ms) end
end
"""

WINDOW_HIT = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, then per key: limit, window, cost, slice field, ttl ms
local now = tonumber(ARGV[1])
local at = {}
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 5
  local limit, window, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local used, retry = refused(KEYS[i], limit, window, cost, now, ARGV[base + 4])
  if used then return {i - 1, used, retry} end
  at[i] = retry
end
local seen = {}
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 5
  local cost, field = tonumber(ARGV[base + 3]), ARGV[base + 4]
  if cost ~= 0 then
    if not fresh(seen, KEYS[i]) then at[i] = {live(KEYS[i], tonumber(ARGV[base + 2]), now, field)} end
    add(KEYS[i], field, cost, tonumber(ARGV[base + 5]), at[i])
  end
end
return false
"""
)

WINDOW_ADD = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, window, amount, slice field, ttl ms
local at = {live(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]), ARGV[4])}
add(KEYS[1], ARGV[4], tonumber(ARGV[3]), tonumber(ARGV[5]), at)
return true
"""
)

WINDOW_USED = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, window
local used = live(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]), 't')
return fmt(used)
"""
)

_SLOTS = """
local function slots_full(key, lease, now, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key) >= limit and not redis.call('ZSCORE', key, lease)
end
"""

SLOTS_ACQUIRE = (
    _COMMON
    + _SLOTS
    + """
-- ARGV: lease, now, until, ttl ms, then one limit per key
local lease, now = ARGV[1], ARGV[2]
for i = 1, #KEYS do
  if slots_full(KEYS[i], lease, now, tonumber(ARGV[4 + i])) then return i - 1 end
end
local ttl_ms = tonumber(ARGV[4])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[3], lease)
  keep_for(KEYS[i], ttl_ms)
end
return -1
"""
)

SLOTS_RELEASE = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return true
"""

_SPEND = """
local function create(key, spent, expires)
  if redis.call('EXISTS', key) == 1 then return false end
  redis.call('HSET', key, 'spent', spent, 'reserved', '0', 'n', '0')
  expire_at(key, expires)
  return true
end
local function num(key, field) return tonumber(redis.call('HGET', key, field)) end
-- Drop leases expired at `now` (only once the earliest expiry has passed, as in memory).
local function expire_leases(key, now)
  local nxt = redis.call('HGET', key, 'next')
  if not nxt or now < tonumber(nxt) then return end
  local flat = redis.call('HGETALL', key)
  local reserved, n = num(key, 'reserved'), num(key, 'n')
  local soonest = nil
  for j = 1, #flat, 2 do
    local field = flat[j]
    if string.sub(field, 1, 2) == 'u:' then
      local until_ = tonumber(flat[j + 1])
      if until_ <= now then
        local lease = string.sub(field, 3)
        reserved = reserved - tonumber(redis.call('HGET', key, 'a:' .. lease))
        redis.call('HDEL', key, 'a:' .. lease, field)
        n = n - 1
      elseif soonest == nil or until_ < soonest then
        soonest = until_
      end
    end
  end
  if n == 0 then reserved = 0 end
  redis.call('HSET', key, 'reserved', fmt(reserved), 'n', n)
  if soonest then redis.call('HSET', key, 'next', fmt(soonest)) else redis.call('HDEL', key, 'next') end
end
local function state(key)
  return {fmt(num(key, 'spent')), fmt(math.max(num(key, 'reserved'), 0)), num(key, 'n')}
end
-- The hot path (admit, reserve, settle) reads a counter's fields with one HMGET: every call a
-- script makes costs about as much as the arithmetic around it.
-- Nil and what `hold` needs ({reserved, n, the lease's amount, next}) when the counter has room;
-- else its state. Creates it (kept until `expires`) if new.
local function full(key, limit, expires, now, lease)
  local v = redis.call('HMGET', key, 'spent', 'reserved', 'n', 'next', 'a:' .. lease)
  if not v[1] then
    create(key, '0', expires)
    v = {'0', '0', '0'}
  elseif v[4] and now >= tonumber(v[4]) then
    expire_leases(key, now)
    v = redis.call('HMGET', key, 'spent', 'reserved', 'n', 'next', 'a:' .. lease)
  end
  local spent, reserved = tonumber(v[1]), tonumber(v[2])
  if spent + reserved >= limit then return {fmt(spent), fmt(math.max(reserved, 0)), tonumber(v[3])} end
  return nil, {v[2], v[3], v[5], v[4]}
end
-- Hold `amount` (the argument string, stored exactly) for `lease` until `until_s`, given the
-- counter's fields `full` read just before (nil: read them here).
local function hold(key, lease, amount, until_s, v)
  v = v or redis.call('HMGET', key, 'reserved', 'n', 'a:' .. lease, 'next')
  local reserved, n = tonumber(v[1]), tonumber(v[2])
  if v[3] then reserved = reserved - tonumber(v[3]) else n = n + 1 end
  reserved = reserved + tonumber(amount)
  local fields = {'a:' .. lease, amount, 'u:' .. lease, until_s, 'reserved', fmt(reserved), 'n', n}
  if not v[4] or tonumber(until_s) < tonumber(v[4]) then
    fields[#fields + 1] = 'next'
    fields[#fields + 1] = until_s
  end
  redis.call('HSET', key, unpack(fields))
end
-- Drop the lease's hold and add `actual`; returns the new state.
local function settle(key, lease, actual, now)
  local v = redis.call('HMGET', key, 'spent', 'reserved', 'n', 'a:' .. lease)
  local created = not v[1]
  local spent, reserved, n = 0, 0, 0
  if not created then spent, reserved, n = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) end
  if v[4] then
    reserved = reserved - tonumber(v[4])
    redis.call('HDEL', key, 'a:' .. lease, 'u:' .. lease)
    n = n - 1
  end
  if n == 0 then reserved = 0 end
  spent = tonumber(fmt(spent + actual))
  redis.call('HSET', key, 'spent', fmt(spent), 'reserved', fmt(reserved), 'n', n)
  if created then expire_at(key, now + DEFAULT_KEEP) end
  return {fmt(spent), fmt(math.max(reserved, 0)), n}
end
"""

SPEND_RESERVE = (
    _COMMON
    + _SPEND
    + """
-- ARGV: lease, amount, now, until, then per key: limit, expires at
local lease, now = ARGV[1], tonumber(ARGV[3])
local at = {}
for i = 1, #KEYS do
  local s, fields = full(KEYS[i], tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i]), now, lease)
  if s then return {i - 1, s[1], s[2], s[3]} end
  at[i] = fields
end
local seen = {}
for i = 1, #KEYS do
  local read = at[i]
  if not fresh(seen, KEYS[i]) then read = nil end
  hold(KEYS[i], lease, ARGV[2], ARGV[4], read)
end
return false
"""
)

SPEND_SETTLE = (
    _COMMON
    + _SPEND
    + """
-- ARGV: lease, actual, now
local lease, actual, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS do out[i] = settle(KEYS[i], lease, actual, now) end
return out
"""
)

SPEND_STATE = (
    _COMMON
    + _SPEND
    + """
-- ARGV: now
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0', '0', 0} end
expire_leases(KEYS[1], tonumber(ARGV[1]))
return state(KEYS[1])
"""
)

SPEND_SEED = (
    _COMMON
    + _SPEND
    + """
-- ARGV: spent, expires at
if create(KEYS[1], fmt(tonumber(ARGV[1])), tonumber(ARGV[2])) then return 1 end
return 0
"""
)

ONCE = (
    _COMMON
    + """
-- ARGV: expires at
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], '1')
expire_at(KEYS[1], tonumber(ARGV[1]))
return 1
"""
)

SLOTS_USED = """
-- ARGV: now. Leases that have not expired (a read: the expired ones stay until the next write).
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
"""

ADMIT = (
    _COMMON
    + _WINDOW
    + _SPEND
    + _SLOTS
    + """
-- `SLOTS_ACQUIRE`, `WINDOW_HIT` and `SPEND_RESERVE` in one step, all or nothing.
-- KEYS: slot keys, then window keys, then spend keys.
-- ARGV: lease, now, number of slot keys, number of window keys, slot until, slot ttl ms,
--       amount, spend until, the checks' numbers, then one slice field per window key.
-- The checks' numbers are one space-separated string (the same for every request under one
-- policy, so the client encodes it once; one argument is far cheaper to send than twenty):
-- per slot key its limit, per window key its limit, window, cost and ttl ms, per spend key its
-- limit and expiry.
-- Returns false when admitted, else {0, index} (slots), {1, index, used, retry} (window) or
-- {2, index, spent, reserved, leases} (spend).
local lease, now = ARGV[1], tonumber(ARGV[2])
local ns, nw = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = {}
for x in string.gmatch(ARGV[9], '%S+') do n[#n + 1] = tonumber(x) end
local wbase = ns
local bbase = ns + 4 * nw
for i = 1, ns do
  if slots_full(KEYS[i], lease, ARGV[2], n[i]) then return {0, i - 1} end
end
local at = {}
for i = 1, nw do
  local base = wbase + (i - 1) * 4
  local used, retry = refused(KEYS[ns + i], n[base + 1], n[base + 2], n[base + 3], now, ARGV[9 + i])
  if used then return {1, i - 1, used, retry} end
  at[i] = retry
end
local held = {}
for i = 1, #KEYS - ns - nw do
  local base = bbase + (i - 1) * 2
  local s, fields = full(KEYS[ns + nw + i], n[base + 1], n[base + 2], now, lease)
  if s then return {2, i - 1, s[1], s[2], s[3]} end
  held[i] = fields
end
local slot_ttl = tonumber(ARGV[6])
for i = 1, ns do
  redis.call('ZADD', KEYS[i], ARGV[5], lease)
  keep_for(KEYS[i], slot_ttl)
end
local seen = {}
for i = 1, nw do
  local base = wbase + (i - 1) * 4
  local cost, key, field = n[base + 3], KEYS[ns + i], ARGV[9 + i]
  if cost ~= 0 then
    if not fresh(seen, key) then at[i] = {live(key, n[base + 2], now, field)} end
    add(key, field, cost, n[base + 4], at[i])
  end
end
seen = {}
for i = 1, #KEYS - ns - nw do
  local key = KEYS[ns + nw + i]
  local read = held[i]
  if not fresh(seen, key) then read = nil end
  hold(key, lease, ARGV[7], ARGV[8], read)
end
return false
"""
)

FINISH = (
    _COMMON
    + _WINDOW
    + _SPEND
    + """
-- `SLOTS_RELEASE`, `WINDOW_ADD` per token key and `SPEND_SETTLE` in one step.
-- KEYS: slot keys, then token window keys, then spend keys.
-- ARGV: lease, now, number of slot keys, number of token keys, tokens, window, slice field,
--       ttl ms, actual. Returns the spend keys' states (as SPEND_SETTLE).
local lease, now = ARGV[1], tonumber(ARGV[2])
local ns, nt = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, window = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 1, ns do redis.call('ZREM', KEYS[i], lease) end
if tokens > 0 then
  for i = ns + 1, ns + nt do
    add(KEYS[i], ARGV[7], tokens, tonumber(ARGV[8]), {live(KEYS[i], window, now, ARGV[7])})
  end
end
local actual = tonumber(ARGV[9])
local out = {}
for i = ns + nt + 1, #KEYS do out[#out + 1] = settle(KEYS[i], lease, actual, now) end
return out
"""
)
