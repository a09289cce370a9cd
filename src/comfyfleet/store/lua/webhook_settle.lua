-- webhook_settle: the sender that holds a delivery's claim records how the attempt went.
--
-- KEYS[1]  {ns}:webhooks:due
-- KEYS[2]  {ns}:webhook:<id>
-- KEYS[3]  {ns}:webhooks:dead  (score ms given up)
-- ARGV[1]  claim token (a sender whose claim lapsed and was taken over changes nothing)
-- ARGV[2]  "done" | "retry" | "dead"
-- ARGV[3]  now (ms)
-- ARGV[4]  retry: when to try again (ms); dead: how long to keep the record (ms)
-- ARGV[5]  the attempt's error ('' when done)
--
-- Returns 1 when settled, 0 when the claim was not (or no longer) this sender's.
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[1] then
  return 0
end
local id = redis.call('HGET', KEYS[2], 'id')
if ARGV[2] == 'done' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', KEYS[2])
elseif ARGV[2] == 'retry' then
  redis.call('ZADD', KEYS[1], ARGV[4], id)
  redis.call('HSET', KEYS[2], 'claim', '', 'last_error', ARGV[5])
else
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[3], ARGV[3], id)
  redis.call('HSET', KEYS[2], 'claim', '', 'last_error', ARGV[5], 'dead_ms', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  -- Entries whose records have expired go with them, so the dead set stays bounded.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', tonumber(ARGV[3]) - tonumber(ARGV[4])))
end
return 1
