-- Record a new API key (store/apikeys.py). Only the key's sha256 is stored, never the key.
-- KEYS[1] {ns}:apikey:<id>  HASH name, sha256, created_ms, last_used_ms, scopes
-- KEYS[2] {ns}:apikeys      ZSET id by created ms (the listing)
-- ARGV[1] id, ARGV[2] name, ARGV[3] sha256 hex, ARGV[4] created ms,
-- ARGV[5] scopes, comma-separated ("" none)
-- Returns 1, or 0 when the id is taken (48 random bits: the caller draws another).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'sha256', ARGV[3], 'created_ms', ARGV[4],
  'last_used_ms', '', 'scopes', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
