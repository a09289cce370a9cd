-- input_put: store an uploaded image and set its TTL in one step (a crash in between would
-- leave bytes with no TTL); never shorten the TTL of bytes already stored.
-- KEYS[1]  {ns}:input:<id>
-- A (inputs.PutArgs)  ttl_ms, fields (content_type, size, width, height, sha256)
-- ARGV[2]  the image bytes (not text, so not in A); absent when they live in an object
--          store (then A.fields has `blob`, the object's key)
-- Returns the TTL the input now has (ms).
local fields = {}
if ARGV[2] then
  fields = { 'data', ARGV[2] }
end
for name, value in pairs(A.fields) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = redis.call('PTTL', KEYS[1])
if ttl < A.ttl_ms then
  redis.call('PEXPIRE', KEYS[1], A.ttl_ms)
  return A.ttl_ms
end
return ttl
