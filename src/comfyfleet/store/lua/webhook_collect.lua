-- webhook_collect: turn one ended job (or one batch of progress) into queued deliveries.
--
-- KEYS[1]  {ns}:webhooks:ended   jobs whose terminal webhooks are due (written by finish())
-- KEYS[2]  {ns}:webhooks:due     deliveries (score due ms)
-- A (webhooks.CollectArgs)  now_ms, job_id, guard (true: only if the job is still in
--          KEYS[1], and take it out, so of two replicas collecting the same job exactly one
--          queues its deliveries; false: always), delivery_prefix ({ns}:webhook:),
--          deliveries (a list of {id, url, event, body, max_attempts})
--
-- Returns the number of deliveries queued.
local now, job_id = A.now_ms, A.job_id
if A.guard and redis.call('ZREM', KEYS[1], job_id) == 0 then
  return 0
end
local n = 0
for _, d in ipairs(A.deliveries) do
  local key = A.delivery_prefix .. d.id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'id', d.id, 'job_id', job_id, 'url', d.url, 'event', d.event,
      'body', d.body, 'max_attempts', d.max_attempts, 'attempts', 0, 'created_ms', now,
      'claim', '', 'last_error', '')
    redis.call('ZADD', KEYS[2], now, d.id)
    n = n + 1
  end
end
return n
