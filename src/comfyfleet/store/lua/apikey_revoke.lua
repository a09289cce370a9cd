-- Revoke an API key: from this call on, no request authenticates with it.
-- KEYS[1] {ns}:apikey:<id>, KEYS[2] {ns}:apikeys; ARGV[1] id
-- Returns 1 when the key existed, 0 otherwise.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
