-- userdata_put: write one file of a principal's editor user data (store/userdata.py).
-- KEYS[1] {ns}:userdata:<principal>       HASH path -> bytes
-- KEYS[2] {ns}:userdata:<principal>:meta  HASH path -> {"size","created_ms","modified_ms"}
-- A (userdata.PutArgs)  path, overwrite (false: refuse an existing path), max_files
-- ARGV[2] the file's bytes
-- Time from Redis. Returns the file's meta JSON, or "exists" (overwrite false and the
-- path is taken) or "full" (a new path past max_files); nothing is written then.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HGET', KEYS[2], A.path)
if old and not A.overwrite then
  return 'exists'
end
if not old and redis.call('HLEN', KEYS[2]) >= A.max_files then
  return 'full'
end
local created = now
if old then
  created = cjson.decode(old).created_ms
end
local meta = cjson.encode({size = #ARGV[2], created_ms = created, modified_ms = now})
redis.call('HSET', KEYS[1], A.path, ARGV[2])
redis.call('HSET', KEYS[2], A.path, meta)
return meta
