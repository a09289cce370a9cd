-- Retire a workflow: it leaves the listing and unpinned submits; its versions and log stay
-- (readable, and a publish or rollback brings it back).
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- ARGV[1] name  ARGV[2] author  ARGV[3] now (ms)  ARGV[4] most log entries kept
-- Returns the version that was active, or false when the workflow was not published.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then
  return false
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'current')
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = 'retire', version = '', previous = current, author = ARGV[2], note = '',
  at_ms = tonumber(ARGV[3]),
}))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
return current
