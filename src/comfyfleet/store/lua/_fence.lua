-- Prelude of every fenced script (store/leader.py `FencedScript`): KEYS[1] is the leader
-- key, ARGV[1] the caller's lease token, ARGV[2] the script's named arguments (read as `A`).
-- A caller whose lease lapsed -- maybe another process leads now -- changes nothing and
-- gets the error `NOTLEADER`.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('NOTLEADER the leadership lease is not held by this token')
end
local A = cjson.decode(ARGV[2])
