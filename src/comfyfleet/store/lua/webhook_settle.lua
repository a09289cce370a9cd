-- webhook_settle: the sender that holds a delivery's claim records how the attempt went.
--
-- KEYS[1]  {ns}:webhooks:due
-- KEYS[2]  {ns}:webhook:<id>
-- KEYS[3]  {ns}:webhooks:dead  (score ms given up)
-- A (webhooks.SettleArgs)  token (a sender whose claim lapsed and was taken over changes
--          nothing), mode ("done" | "retry" | "dead"), now_ms, when_ms (retry: when to try
--          again, ms; dead: how long to keep the record, ms), error ('' when done)
--
-- Returns 1 when settled, 0 when the claim was not (or no longer) this sender's.
if redis.call('HGET', KEYS[2], 'claim') ~= A.token then
  return 0
end
local id = redis.call('HGET', KEYS[2], 'id')
if A.mode == 'done' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', KEYS[2])
elseif A.mode == 'retry' then
  redis.call('ZADD', KEYS[1], A.when_ms, id)
  redis.call('HSET', KEYS[2], 'claim', '', 'last_error', A.error)
else
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[3], A.now_ms, id)
  redis.call('HSET', KEYS[2], 'claim', '', 'last_error', A.error, 'dead_ms', A.now_ms)
  redis.call('PEXPIRE', KEYS[2], A.when_ms)
  -- Entries whose records have expired go with them, so the dead set stays bounded.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf',
    '(' .. string.format('%.0f', A.now_ms - A.when_ms))
end
return 1
