-- userdata_move: rename one file of a principal's editor user data (store/userdata.py).
-- KEYS[1] {ns}:userdata:<principal>       HASH path -> bytes
-- KEYS[2] {ns}:userdata:<principal>:meta  HASH path -> {"size","created_ms","modified_ms"}
-- A (userdata.MoveArgs)  source, dest, overwrite (false: refuse an existing dest)
-- Returns the moved file's meta JSON, or "missing" (no source) or "exists" (dest taken
-- and overwrite false); nothing is written then. Moving a file onto itself changes nothing.
local meta = redis.call('HGET', KEYS[2], A.source)
if not meta then
  return 'missing'
end
if A.source == A.dest then
  return meta
end
if not A.overwrite and redis.call('HEXISTS', KEYS[2], A.dest) == 1 then
  return 'exists'
end
local body = redis.call('HGET', KEYS[1], A.source)
redis.call('HSET', KEYS[1], A.dest, body)
redis.call('HSET', KEYS[2], A.dest, meta)
redis.call('HDEL', KEYS[1], A.source)
redis.call('HDEL', KEYS[2], A.source)
return meta
