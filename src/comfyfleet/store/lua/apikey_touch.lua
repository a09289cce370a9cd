-- Stamp a key's last use, unless it was revoked meanwhile (an HSET on a deleted key would
-- bring back a hash no listing shows).
-- KEYS[1] {ns}:apikey:<id>; ARGV[1] now ms
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used_ms', ARGV[1])
  return 1
end
return 0
