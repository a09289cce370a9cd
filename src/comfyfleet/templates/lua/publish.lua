-- publish: one version of one workflow becomes the active one, atomically.
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current", "seeded"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- A (publishing.PublishArgs)  name, version, template (JSON), author, note, now_ms,
--         expected (the active version: "" none, "*" any, no check), mode ("publish": the
--         API, "seed": a balancer's folders at start), log_limit (most log entries kept)
-- Returns {outcome, active version before}:
--   "published" (a new version), "activated" (a stored version made active again),
--   "unchanged" (already active; nothing written), "moved" (the active version is not the
--   expected one: the caller checked its contract against a stale one; nothing written),
--   "seen" (seed only: this balancer's folders already published this version).
-- A version is a content hash, so an existing version's JSON is never rewritten: the bytes
-- a job was rendered from stay readable as they were.
local current = redis.call('HGET', KEYS[1], 'current') or ''
if A.mode == 'seed' then
  if redis.call('HGET', KEYS[1], 'seeded') == A.version then
    return {'seen', current}
  end
  -- Remembered even when nothing else changes, so a later rollback or retire through the
  -- API is not undone by the next balancer start with the same files.
  redis.call('HSET', KEYS[1], 'seeded', A.version)
elseif A.expected ~= '*' and A.expected ~= current then
  return {'moved', current}
end
if current == A.version then
  return {'unchanged', current}
end
local created = redis.call('HSETNX', KEYS[1], A.version, A.template)
redis.call('HSET', KEYS[1], 'current', A.version)
redis.call('HSET', KEYS[2], A.name, A.version)
local action = (created == 1) and 'publish' or 'activate'
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = action, version = A.version, previous = current, author = A.author, note = A.note,
  at_ms = A.now_ms,
}))
redis.call('LTRIM', KEYS[3], -A.log_limit, -1)
return {(created == 1) and 'published' or 'activated', current}
