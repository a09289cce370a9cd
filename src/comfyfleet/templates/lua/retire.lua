-- retire: a workflow leaves the listing and unpinned submits; its versions and log stay
-- (readable, and a publish or rollback brings it back).
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- A (publishing.RetireArgs)  name, author, now_ms, log_limit (most log entries kept)
-- Returns the version that was active, or false when the workflow was not published.
local current = redis.call('HGET', KEYS[2], A.name)
if not current then
  return false
end
redis.call('HDEL', KEYS[2], A.name)
redis.call('HDEL', KEYS[1], 'current')
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = 'retire', version = '', previous = current, author = A.author, note = '',
  at_ms = A.now_ms,
}))
redis.call('LTRIM', KEYS[3], -A.log_limit, -1)
return current
