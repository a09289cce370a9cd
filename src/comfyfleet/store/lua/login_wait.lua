-- login_wait: how long a source must still wait before its credentials are looked at
-- (store/logins.py).
-- KEYS[1] {ns}:authfail:<source>  HASH count, until_ms
-- A (logins.WaitArgs)  nothing
-- Time from Redis. Returns {ms left (0: none), failures on record}.
local count, until_ms = unpack(redis.call('HMGET', KEYS[1], 'count', 'until_ms'))
if not count then
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {math.max(0, (tonumber(until_ms) or 0) - now), tonumber(count)}
