-- Count a failed login from one source and set how long it must wait (store/logins.py).
-- KEYS[1] {ns}:authfail:<source>  HASH count, until_ms
-- ARGV[1] failures that cost no wait, ARGV[2] first wait ms, ARGV[3] longest wait ms,
-- ARGV[4] how long the record lives after the last failure (ms)
-- Time from Redis. Returns the wait now imposed (ms; 0 within the free failures).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local over = count - tonumber(ARGV[1])
local wait = 0
if over > 0 then
  wait = math.min(tonumber(ARGV[2]) * 2 ^ math.min(over - 1, 30), tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'until_ms', now + wait)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
