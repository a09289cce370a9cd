-- webhook_lease: lease due members of a schedule ZSET (jobs whose progress is forwarded).
--
-- KEYS[1]  the ZSET (score: when next due, ms)
-- ARGV[1]  now (ms)
-- ARGV[2]  lease deadline (ms): the member is due again then unless its holder reschedules
-- ARGV[3]  most members to lease
--
-- Returns the leased members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
