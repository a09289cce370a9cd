-- The one clock (store/scripts.py prepends this to every script that reads time): Redis
-- TIME in integer ms, so leases, deadlines, backoff, ordering and node liveness never
-- depend on a caller's clock. The test suite alone may steer it through the `{ns}:clock`
-- HASH (its name is passed as CLOCK_KEY): `frozen_ms` stands in for TIME, or `offset_ms`
-- is added to it. Nothing in the fleet writes that key and no API reaches it.
local function clock_ms(clock_key)
  local steer = redis.call('HMGET', clock_key, 'frozen_ms', 'offset_ms')
  if steer[1] then
    return tonumber(steer[1])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + (tonumber(steer[2]) or 0)
end
