-- input_hold: keep the inputs a job names for at least ttl_ms; extends, never shortens.
-- KEYS     {ns}:input:<id>, one per input
-- A (inputs.HoldArgs)  ttl_ms
-- Returns the 1-based positions of the keys that do not exist.
local missing = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl == -2 then
    missing[#missing + 1] = i
  elseif ttl >= 0 and ttl < A.ttl_ms then
    redis.call('PEXPIRE', key, A.ttl_ms)
  end
end
return missing
