-- alerts_commit: record one evaluation round, fenced (see _fence.lua: KEYS[1] and ARGV[1]
-- are the evaluator's leadership lease and token), so a stale evaluator changes nothing.
--
-- KEYS[2]  {ns}:alerts:state    HASH fingerprint -> alert state JSON
-- KEYS[3]  {ns}:alerts:samples  ZSET (score ms) of counter samples, JSON
-- KEYS[4]  {ns}:alerts:due      ZSET (score due ms) of notifications to deliver
-- A (alerts.store.CommitArgs)  now_ms, sample (this round's counter sample, JSON),
--          drop_before_ms (older samples are dropped), notification_prefix ({ns}:alert:),
--          states (a list of [fingerprint, state JSON]), forget (fingerprints), and
--          notifications (a list of {id, receiver, event, body, max_attempts})
--
-- Returns the number of notifications queued. The state, the sample and the notifications
-- land together or not at all: a takeover after this sends nothing twice, before it
-- nothing was sent.
local now = A.now_ms
redis.call('ZADD', KEYS[3], now, A.sample)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', A.drop_before_ms))
for _, state in ipairs(A.states) do
  redis.call('HSET', KEYS[2], state[1], state[2])
end
for _, fingerprint in ipairs(A.forget) do
  redis.call('HDEL', KEYS[2], fingerprint)
end
local queued = 0
for _, n in ipairs(A.notifications) do
  local key = A.notification_prefix .. n.id
  if redis.call('EXISTS', key) == 0 then
    -- The delivery record has the webhook queue's layout, so webhook_claim/settle serve it.
    redis.call('HSET', key, 'id', n.id, 'job_id', '', 'url', n.receiver, 'event', n.event,
      'body', n.body, 'max_attempts', n.max_attempts, 'attempts', 0, 'created_ms', now,
      'claim', '', 'last_error', '')
    redis.call('ZADD', KEYS[4], now, n.id)
    queued = queued + 1
  end
end
return queued
