-- Publish one version of one workflow and make it the active one, atomically.
-- KEYS[1] {ns}:workflow:<name>      HASH version -> template JSON, "current", "seeded"
-- KEYS[2] {ns}:workflows            HASH name -> active version
-- KEYS[3] {ns}:workflow:<name>:log  LIST JSON entries, newest last
-- ARGV[1] name            ARGV[2] version       ARGV[3] template JSON
-- ARGV[4] author          ARGV[5] note          ARGV[6] now (ms)
-- ARGV[7] expected active version: "" none, "*" any (no check)
-- ARGV[8] mode: "publish" (the API), "seed" (a balancer's folders at start)
-- ARGV[9] most log entries kept
-- Returns {outcome, active version before}:
--   "published" (a new version), "activated" (a stored version made active again),
--   "unchanged" (already active; nothing written), "moved" (the active version is not the
--   expected one: the caller checked its contract against a stale one; nothing written),
--   "seen" (seed only: this balancer's folders already published this version).
-- A version is a content hash, so an existing version's JSON is never rewritten: the bytes
-- a job was rendered from stay readable as they were.
local current = redis.call('HGET', KEYS[1], 'current') or ''
if ARGV[8] == 'seed' then
  if redis.call('HGET', KEYS[1], 'seeded') == ARGV[2] then
    return {'seen', current}
  end
  -- Remembered even when nothing else changes, so a later rollback or retire through the
  -- API is not undone by the next balancer start with the same files.
  redis.call('HSET', KEYS[1], 'seeded', ARGV[2])
elseif ARGV[7] ~= '*' and ARGV[7] ~= current then
  return {'moved', current}
end
if current == ARGV[2] then
  return {'unchanged', current}
end
local created = redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'current', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local action = (created == 1) and 'publish' or 'activate'
redis.call('RPUSH', KEYS[3], cjson.encode({
  action = action, version = ARGV[2], previous = current, author = ARGV[4], note = ARGV[5],
  at_ms = tonumber(ARGV[6]),
}))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[9]), -1)
return {(created == 1) and 'published' or 'activated', current}
