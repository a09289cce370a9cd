-- input_put: store an uploaded image, charged to its caller, within the caller's quota and
-- the input store's total bound; set its TTL in the same step (a crash in between would
-- leave bytes with no TTL); never shorten the TTL of bytes already stored.
-- KEYS[1]  {ns}:input:<id>      HASH the input
-- KEYS[2]  {ns}:inputs:ledger   ZSET "<id>|<size>|<caller>" by expiry ms: what is charged
-- KEYS[3]  {ns}:inputs:usage    HASH caller -> bytes held; "*" -> all callers
-- A (inputs.PutArgs)  ttl_ms, fields (content_type, size, width, height, sha256[, blob]),
--   input_id, input_prefix (keys.py: an input key is the prefix + its id), caller,
--   size (bytes), caller_quota, total (bytes), owner (the uploader's Principal label:
--   recorded as field `by:<owner>`, so only jobs of owners who uploaded these bytes may
--   name them; the same bytes uploaded by two owners are one input, both recorded)
-- ARGV[2]  the image bytes (not text, so not in A); absent when they live in an object
--          store (then A.fields has `blob`, the object's key)
-- Time from Redis. Returns {TTL ms, 1} when stored (and charged), {TTL ms, 0} when the
-- input was there already (not charged again), {-1, held} over the caller's quota,
-- {-2, held} over the total.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Settle charges whose time is up: a held input (a job named it) stays charged, one that
-- expired is refunded. At most 256 a call; each upload settles some.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)
for _, entry in ipairs(due) do
  local id, bytes, owner = string.match(entry, '^([^|]+)|([^|]+)|(.*)$')
  local left = redis.call('PTTL', A.input_prefix .. id)
  if left > 0 then
    redis.call('ZADD', KEYS[2], now + left, entry)
  else
    redis.call('ZREM', KEYS[2], entry)
    redis.call('HINCRBY', KEYS[3], owner, -tonumber(bytes))
    redis.call('HINCRBY', KEYS[3], '*', -tonumber(bytes))
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl ~= -2 then
  redis.call('HSET', KEYS[1], 'by:' .. A.owner, '1')
  if ttl < A.ttl_ms then
    redis.call('PEXPIRE', KEYS[1], A.ttl_ms)
    ttl = A.ttl_ms
  end
  return {ttl, 0}
end
local mine = tonumber(redis.call('HGET', KEYS[3], A.caller) or '0')
if mine + A.size > A.caller_quota then
  return {-1, mine}
end
local all = tonumber(redis.call('HGET', KEYS[3], '*') or '0')
if all + A.size > A.total then
  return {-2, all}
end
local fields = {}
if ARGV[2] then
  fields = { 'data', ARGV[2] }
end
for name, value in pairs(A.fields) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
fields[#fields + 1] = 'by:' .. A.owner
fields[#fields + 1] = '1'
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], A.ttl_ms)
redis.call('ZADD', KEYS[2], now + A.ttl_ms, A.input_id .. '|' .. A.size .. '|' .. A.caller)
redis.call('HINCRBY', KEYS[3], A.caller, A.size)
redis.call('HINCRBY', KEYS[3], '*', A.size)
return {A.ttl_ms, 1}
