-- alerts_commit: record one evaluation round, fenced (see _fence.lua: KEYS[1] and ARGV[1]
-- are the evaluator's leadership lease and token), so a stale evaluator changes nothing.
--
-- KEYS[2]  {ns}:alerts:state    HASH fingerprint -> alert state JSON
-- KEYS[3]  {ns}:alerts:samples  ZSET (score ms) of counter samples, JSON
-- KEYS[4]  {ns}:alerts:due      ZSET (score due ms) of notifications to deliver
-- ARGV[2]  now (ms)
-- ARGV[3]  this round's counter sample (JSON)
-- ARGV[4]  samples older than this (ms) are dropped
-- ARGV[5]  notification key prefix ({ns}:alert:)
-- ARGV[6]  n: how many states follow, as n (fingerprint, JSON) pairs
-- then     m, followed by m fingerprints to forget
-- then     notifications, 5 values each: id, receiver, event, body, max attempts
--
-- Returns the number of notifications queued. The state, the sample and the notifications
-- land together or not at all: a takeover after this sends nothing twice, before it
-- nothing was sent.
local now = ARGV[2]
redis.call('ZADD', KEYS[3], now, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[4])
local i = 6
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
local m = tonumber(ARGV[i])
for j = 1, m do
  redis.call('HDEL', KEYS[2], ARGV[i + j])
end
i = i + m + 1
local queued = 0
while i + 4 <= #ARGV do
  local id = ARGV[i]
  local key = ARGV[5] .. id
  if redis.call('EXISTS', key) == 0 then
    -- The delivery record has the webhook queue's layout, so webhook_claim/settle serve it.
    redis.call('HSET', key, 'id', id, 'job_id', '', 'url', ARGV[i + 1], 'event', ARGV[i + 2],
      'body', ARGV[i + 3], 'max_attempts', ARGV[i + 4], 'attempts', 0, 'created_ms', now,
      'claim', '', 'last_error', '')
    redis.call('ZADD', KEYS[4], now, id)
    queued = queued + 1
  end
  i = i + 5
end
return queued
