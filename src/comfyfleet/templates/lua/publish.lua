-- Publish one version of one workflow and make it current, atomically.
-- KEYS[1] {ns}:workflow:<name>  HASH version -> template JSON, "current" -> version
-- KEYS[2] {ns}:workflows        HASH name -> current version
-- ARGV[1] name, ARGV[2] version, ARGV[3] template JSON
-- Returns 1 when something changed, 0 when that version was already current (a no-op).
-- A version is a content hash, so an existing version's JSON is never rewritten: the bytes
-- a running job was rendered from stay readable as they were.
if redis.call('HGET', KEYS[1], 'current') == ARGV[2] then
  return 0
end
redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'current', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
