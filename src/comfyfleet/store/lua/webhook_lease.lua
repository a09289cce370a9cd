-- webhook_lease: lease due members of a schedule ZSET (jobs whose progress is forwarded).
--
-- KEYS[1]  the ZSET (score: when next due, ms)
-- A (webhooks.LeaseArgs)  now_ms, deadline_ms (the member is due again then unless its
--          holder reschedules), limit (most members to lease)
--
-- Returns the leased members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', A.now_ms, 'LIMIT', 0, A.limit)
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], A.deadline_ms, member)
end
return due
