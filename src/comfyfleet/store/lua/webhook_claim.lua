-- webhook_claim: lease due deliveries to one sender.
--
-- KEYS[1]  {ns}:webhooks:due   (score due ms; while claimed, the claim's deadline)
-- A (webhooks.ClaimArgs)  now_ms, deadline_ms (past it, another sender may take the
--          delivery again), limit (most deliveries to claim), delivery_prefix
--          ({ns}:webhook:), token (only its holder may settle the delivery, see
--          webhook_settle.lua)
--
-- Returns one HGETALL list per claimed delivery, attempts already counted.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', A.now_ms, 'LIMIT', 0, A.limit)
local out = {}
for _, id in ipairs(due) do
  local key = A.delivery_prefix .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], id)  -- its hash expired or was deleted: nothing to send
  else
    redis.call('ZADD', KEYS[1], A.deadline_ms, id)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'claim', A.token)
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return out
