-- webhook_claim: lease due deliveries to one sender.
--
-- KEYS[1]  {ns}:webhooks:due   (score due ms; while claimed, the claim's deadline)
-- ARGV[1]  now (ms)
-- ARGV[2]  claim deadline (ms): past it, another sender may take the delivery again
-- ARGV[3]  most deliveries to claim
-- ARGV[4]  delivery key prefix ({ns}:webhook:)
-- ARGV[5]  claim token: only its holder may settle the delivery (see webhook_settle.lua)
--
-- Returns one HGETALL list per claimed delivery, attempts already counted.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  local key = ARGV[4] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], id)  -- its hash expired or was deleted: nothing to send
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'claim', ARGV[5])
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return out
