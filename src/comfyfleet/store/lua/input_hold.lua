-- input_hold: keep the inputs a job names for at least ttl_ms; extends, never shortens.
-- KEYS     {ns}:input:<id>, one per input
-- A (inputs.HoldArgs)  ttl_ms, owner (a Principal label: only inputs it uploaded count as
--   there; '' for any input, the admin's)
-- Returns the 1-based positions of the keys that do not exist (or are another owner's).
local missing = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl ~= -2 and A.owner ~= '' and redis.call('HEXISTS', key, 'by:' .. A.owner) == 0 then
    ttl = -2  -- another owner's upload is, to this one, no upload at all
  end
  if ttl == -2 then
    missing[#missing + 1] = i
  elseif ttl >= 0 and ttl < A.ttl_ms then
    redis.call('PEXPIRE', key, A.ttl_ms)
  end
end
return missing
