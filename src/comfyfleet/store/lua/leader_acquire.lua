-- leader_acquire: take the leadership lease when nobody holds it.
--
-- KEYS[1]  {ns}:leader:<name>        the holder's token "<epoch>:<holder>", PX = the lease
-- KEYS[2]  {ns}:leader:<name>:epoch  the fencing number, INCR once per acquisition
-- A (leader.AcquireArgs)  holder (unique per process life), ttl_ms (the lease)
--
-- Returns the token when this holder has the lease (a retried call that already took it
-- gets the same token back), false when another holder has it.
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  if sep and string.sub(current, sep + 1) == A.holder then
    return current
  end
  return false
end
local epoch = redis.call('INCR', KEYS[2])
local token = epoch .. ':' .. A.holder
redis.call('SET', KEYS[1], token, 'PX', A.ttl_ms)
return token
