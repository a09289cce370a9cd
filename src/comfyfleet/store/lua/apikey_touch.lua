-- apikey_touch: stamp a key's last use, unless it was revoked meanwhile (an HSET on a
-- deleted key would bring back a hash no listing shows).
-- KEYS[1] {ns}:apikey:<id>
-- A (apikeys.TouchArgs)  now_ms
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used_ms', A.now_ms)
  return 1
end
return 0
