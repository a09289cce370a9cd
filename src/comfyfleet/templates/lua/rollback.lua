-- Make a stored version of a workflow the active one again (also revives a retired one).
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- ARGV[1] name  ARGV[2] version  ARGV[3] author  ARGV[4] note  ARGV[5] now (ms)
-- ARGV[6] most log entries kept
-- Returns {outcome, active version before}: "rolled_back", "unchanged" (already active),
-- "missing" (no such version; nothing written).
local current = redis.call('HGET', KEYS[1], 'current') or ''
if ARGV[2] == 'current' or ARGV[2] == 'seeded' or redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return {'missing', current}
end
if current == ARGV[2] then
  return {'unchanged', current}
end
redis.call('HSET', KEYS[1], 'current', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = 'rollback', version = ARGV[2], previous = current, author = ARGV[3], note = ARGV[4],
  at_ms = tonumber(ARGV[5]),
}))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
return {'rolled_back', current}
