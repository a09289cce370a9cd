-- login_failed: count a failed login from one source and set how long it must wait
-- (store/logins.py).
-- KEYS[1] {ns}:authfail:<source>  HASH count, until_ms
-- A (logins.FailedArgs)  free_failures (cost no wait), first_wait_ms, longest_wait_ms,
--   window_ms (how long the record lives after the last failure), source, channel (where
--   the source is published, so every process stops trusting what it cached about it)
-- Time from Redis. Returns the wait now imposed (ms; 0 within the free failures).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local over = count - A.free_failures
local wait = 0
if over > 0 then
  wait = math.min(A.first_wait_ms * 2 ^ math.min(over - 1, 30), A.longest_wait_ms)
  redis.call('HSET', KEYS[1], 'until_ms', now + wait)
end
redis.call('PEXPIRE', KEYS[1], A.window_ms)
redis.call('PUBLISH', A.channel, A.source)
return wait
