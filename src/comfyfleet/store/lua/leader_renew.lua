-- leader_renew: extend the lease, or give it up, only if the caller still holds it.
--
-- KEYS[1]  {ns}:leader:<name>
-- ARGV[1]  the caller's token
-- ARGV[2]  lease (ms); 0 releases it
--
-- Returns 1 when done, 0 when the caller no longer holds the lease (it lapsed and maybe
-- another holder took it: the caller must stop acting as the leader).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
