-- apikey_revoke: from this call on, no request authenticates with the key.
-- KEYS[1] {ns}:apikey:<id>, KEYS[2] {ns}:apikeys
-- A (apikeys.RevokeArgs)  key_id
-- Returns 1 when the key existed, 0 otherwise.
redis.call('ZREM', KEYS[2], A.key_id)
return redis.call('DEL', KEYS[1])
