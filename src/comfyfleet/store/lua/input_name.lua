-- input_name: remember an owner's name for one of its uploads (store/input_names.py), and
-- forget its names older than ttl_ms and, beyond max_names, its oldest: an upload of the
-- same bytes costs nothing, so a client sending them under ever new names must not grow
-- the map without bound.
--
-- KEYS[1]  {ns}:input-names:<owner>        HASH  name -> input name
-- KEYS[2]  {ns}:input-name-times:<owner>  ZSET  name -> when it was last given (ms)
-- KEYS[3]  {ns}:clock                      the test suite's steering of the clock
-- A (input_names.NameArgs)  path, name, ttl_ms, max_names
--
-- Returns how many names were forgotten.
local now = clock_ms(KEYS[3])
redis.call('HSET', KEYS[1], A.path, A.name)
redis.call('ZADD', KEYS[2], now, A.path)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - A.ttl_ms, 'LIMIT', 0, 100)
local over = redis.call('ZCARD', KEYS[2]) - #gone - A.max_names
if over > 0 then
  for _, path in ipairs(redis.call('ZRANGE', KEYS[2], #gone, #gone + over - 1)) do
    gone[#gone + 1] = path
  end
end
for _, path in ipairs(gone) do
  redis.call('HDEL', KEYS[1], path)
  redis.call('ZREM', KEYS[2], path)
end
redis.call('PEXPIRE', KEYS[1], A.ttl_ms)
redis.call('PEXPIRE', KEYS[2], A.ttl_ms)
return #gone
