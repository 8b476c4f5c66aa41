"""The Lua scripts behind `RedisCounterStore`: one per store method, each atomic in Redis.

They mirror `policies.counters.MemoryCounterStore` step for step (same expiry rules,
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
local function keep_for(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

_WINDOW = """
-- Live slices of a window: drops the expired ones; returns used, starts (fields) and amounts.
local function live(key, window, now)
  local flat = redis.call('HGETALL', key)
  local used, fields, stale = 0, {}, {}
  local amounts = {}
  for j = 1, #flat, 2 do
    local start = tonumber(flat[j])
    if start + window <= now then
      stale[#stale + 1] = flat[j]
    else
      local amount = tonumber(flat[j + 1])
      used = used + amount
      fields[#fields + 1] = start
      amounts[start] = amount
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return used, fields, amounts
end
local function add(key, field, amount, ttl_ms)
  local current = redis.call('HGET', key, field)
  local total = amount
  if current then total = tonumber(current) + amount end
  redis.call('HSET', key, field, fmt(total))
  keep_for(key, ttl_ms)
end
"""

WINDOW_HIT = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, then per key: limit, window, cost, slice field, ttl ms
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 5
  local limit, window, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local used, fields, amounts = live(KEYS[i], window, now)
  if used >= limit or used + cost > limit then
    table.sort(fields)
    local left = used
    local retry = window
    for _, start in ipairs(fields) do
      left = left - amounts[start]
      if left < limit and left + cost <= limit then
        retry = math.max(start + window - now, 0)
        break
      end
    end
    return {i - 1, fmt(used), fmt(retry)}
  end
end
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 5
  local cost = tonumber(ARGV[base + 3])
  if cost ~= 0 then add(KEYS[i], ARGV[base + 4], cost, tonumber(ARGV[base + 5])) end
end
return false
"""
)

WINDOW_ADD = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, window, amount, slice field, ttl ms
live(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]))
add(KEYS[1], ARGV[4], tonumber(ARGV[3]), tonumber(ARGV[5]))
return true
"""
)

WINDOW_USED = (
    _COMMON
    + _WINDOW
    + """
-- ARGV: now, window
local used = live(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]))
return fmt(used)
"""
)

SLOTS_ACQUIRE = (
    _COMMON
    + """
-- ARGV: lease, now, until, ttl ms, then one limit per key
local lease, now = ARGV[1], ARGV[2]
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4 + i]) and not redis.call('ZSCORE', KEYS[i], lease) then
    return i - 1
  end
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
"""

SPEND_RESERVE = (
    _COMMON
    + _SPEND
    + """
-- ARGV: lease, amount, now, until, then per key: limit, expires at
local lease, amount, now, until_ = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #KEYS do
  local key = KEYS[i]
  if not create(key, '0', tonumber(ARGV[4 + 2 * i])) then expire_leases(key, now) end
  if num(key, 'spent') + num(key, 'reserved') >= tonumber(ARGV[3 + 2 * i]) then
    local s = state(key)
    return {i - 1, s[1], s[2], s[3]}
  end
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local reserved, n = num(key, 'reserved'), num(key, 'n')
  local previous = redis.call('HGET', key, 'a:' .. lease)
  if previous then reserved = reserved - tonumber(previous) else n = n + 1 end
  reserved = reserved + amount
  redis.call('HSET', key, 'a:' .. lease, ARGV[2], 'u:' .. lease, ARGV[4], 'reserved', fmt(reserved), 'n', n)
  local nxt = redis.call('HGET', key, 'next')
  if not nxt or until_ < tonumber(nxt) then redis.call('HSET', key, 'next', ARGV[4]) end
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
for i = 1, #KEYS do
  local key = KEYS[i]
  create(key, '0', now + DEFAULT_KEEP)
  local reserved, n = num(key, 'reserved'), num(key, 'n')
  local held = redis.call('HGET', key, 'a:' .. lease)
  if held then
    reserved = reserved - tonumber(held)
    redis.call('HDEL', key, 'a:' .. lease, 'u:' .. lease)
    n = n - 1
  end
  if n == 0 then reserved = 0 end
  redis.call('HSET', key, 'spent', fmt(num(key, 'spent') + actual), 'reserved', fmt(reserved), 'n', n)
  out[i] = state(key)
end
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
