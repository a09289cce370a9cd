-- rollback: a stored version of a workflow becomes the active one again (also revives a retired one).
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- A (publishing.RollbackArgs)  name, version, author, note, now_ms, log_limit (most log
--         entries kept)
-- Returns {outcome, active version before}: "rolled_back", "unchanged" (already active),
-- "missing" (no such version; nothing written).
local current = redis.call('HGET', KEYS[1], 'current') or ''
if A.version == 'current' or A.version == 'seeded'
    or redis.call('HEXISTS', KEYS[1], A.version) == 0 then
  return {'missing', current}
end
if current == A.version then
  return {'unchanged', current}
end
redis.call('HSET', KEYS[1], 'current', A.version)
redis.call('HSET', KEYS[2], A.name, A.version)
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = 'rollback', version = A.version, previous = current, author = A.author, note = A.note,
  at_ms = A.now_ms,
}))
redis.call('LTRIM', KEYS[3], -A.log_limit, -1)
return {'rolled_back', current}
