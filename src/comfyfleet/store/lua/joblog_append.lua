-- joblog_append: append ComfyUI log lines to one attempt's log (store/joblogs.py). Lines
-- of an attempt that already ended its job go where the end moved the attempt's short log
-- (the job hash field FOLDED_JOBLOG<n>, fold_joblog in _lib.lua) while they fit there, so
-- a line ComfyUI writes just after the prompt ended costs no key of its own; any other
-- lines go to the attempt's list, trimmed to the writer's count and given the retention.
-- KEYS[1] {ns}:job:<id>
-- KEYS[2] {ns}:joblog:<id>:<attempt>
-- A (joblogs.AppendArgs)  attempt, field (the hash field of the attempt's moved log),
--   lines (JSON texts), keep (how many of the list's last items to keep), retention_ms,
--   max_folded (bytes the moved log may take)
local f = redis.call('HMGET', KEYS[1], 'status', 'attempts', A.field)
local ended = f[1] == 'succeeded' or f[1] == 'failed' or f[1] == 'cancelled'
if ended and f[2] == tostring(A.attempt) and redis.call('EXISTS', KEYS[2]) == 0 then
  local text = table.concat(A.lines, '\n')
  if f[3] then
    text = f[3] .. '\n' .. text
  end
  if #text <= A.max_folded then
    redis.call('HSET', KEYS[1], A.field, text)
    return 'folded'
  end
end
redis.call('RPUSH', KEYS[2], unpack(A.lines))
redis.call('LTRIM', KEYS[2], -A.keep, -1)
redis.call('PEXPIRE', KEYS[2], A.retention_ms)
return 'listed'
