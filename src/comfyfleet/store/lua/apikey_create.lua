-- apikey_create: record a new API key (store/apikeys.py). Only the key's sha256 is stored.
-- KEYS[1] {ns}:apikey:<id>  HASH name, sha256, created_ms, last_used_ms, scopes
-- KEYS[2] {ns}:apikeys      ZSET id by created ms (the listing)
-- A (apikeys.CreateArgs)  key_id, name, sha256 (hex), now_ms, scopes (comma-separated,
--          "" none)
-- Returns 1, or 0 when the id is taken (48 random bits: the caller draws another).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'name', A.name, 'sha256', A.sha256, 'created_ms', A.now_ms,
  'last_used_ms', '', 'scopes', A.scopes)
redis.call('ZADD', KEYS[2], A.now_ms, A.key_id)
return 1
