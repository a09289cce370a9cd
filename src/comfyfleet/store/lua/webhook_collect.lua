-- webhook_collect: turn one ended job (or one batch of progress) into queued deliveries.
--
-- KEYS[1]  {ns}:webhooks:ended   jobs whose terminal webhooks are due (written by finish())
-- KEYS[2]  {ns}:webhooks:due     deliveries (score due ms)
-- ARGV[1]  now (ms)
-- ARGV[2]  job id
-- ARGV[3]  "1": only if the job is still in KEYS[1], and take it out (so of two replicas
--          collecting the same job, exactly one queues its deliveries); "0": always
-- ARGV[4]  delivery key prefix ({ns}:webhook:)
-- ARGV[5..] per delivery 5 values: id, url, event type, body, max attempts
--
-- Returns the number of deliveries queued.
local now, job_id = ARGV[1], ARGV[2]
if ARGV[3] == '1' and redis.call('ZREM', KEYS[1], job_id) == 0 then
  return 0
end
local n = 0
for i = 5, #ARGV, 5 do
  local id = ARGV[i]
  local key = ARGV[4] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'id', id, 'job_id', job_id, 'url', ARGV[i + 1],
      'event', ARGV[i + 2], 'body', ARGV[i + 3], 'max_attempts', ARGV[i + 4],
      'attempts', 0, 'created_ms', now, 'claim', '', 'last_error', '')
    redis.call('ZADD', KEYS[2], now, id)
    n = n + 1
  end
end
return n
