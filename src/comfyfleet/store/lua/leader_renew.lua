-- leader_renew: extend the lease, or give it up, only if the caller still holds it.
--
-- KEYS[1]  {ns}:leader:<name>
-- A (leader.RenewArgs)  token (the caller's), ttl_ms (the lease; 0 releases it)
--
-- Returns 1 when done, 0 when the caller no longer holds the lease (it lapsed and maybe
-- another holder took it: the caller must stop acting as the leader).
if redis.call('GET', KEYS[1]) ~= A.token then
  return 0
end
if A.ttl_ms == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], A.ttl_ms)
end
return 1
