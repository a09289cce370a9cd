-- fail: the owner of a running job reports a failed attempt. A retryable error with
-- attempts left sends the job back to its place in the queue (or to the delayed set until
-- now + backoff); otherwise the job fails for good. The attempt joins the history either way.
-- A job whose cancel was requested ends cancelled instead of retrying. A retried job avoids
-- the node that failed it (claim passes it over there while another node can take it).
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running
-- KEYS[8]     {ns}:owned:<node>
-- KEYS[9]     {ns}:events:<id>
-- KEYS[10]    {ns}:stats
-- KEYS[11]    {ns}:delayed          backing-off jobs (score ready ms)
-- A (FailArgs)  job_id, node_id (claiming ownership), error_json (a JobError), retryable,
--             backoff_ms (not claimable before now + backoff; 0 = at once), attempt (of the
--             lease; 0: any)
--
-- Returns {'ok', fields}, or {'missing'} / {'terminal', status} / {'not_owner', status, owner}.
local now, job_id, node_id = NOW, A.job_id, A.node_id
local job_key, events_key, error_json = KEYS[6], KEYS[9], A.error_json
local problem = owner_problem(job_key, node_id, A.attempt)
if problem then
  return problem
end
local f = redis.call('HMGET', job_key, 'attempts', 'max_attempts', 'cancel_requested')
local attempt, max_attempts = tonumber(f[1]) or 0, tonumber(f[2]) or 1
append_history(job_key, node_id, now, 'failed', error_json)
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
redis.call('HSET', job_key, 'error', error_json)

local event = { node_id = node_id, attempt = attempt, at_ms = now }
if f[3] == '1' then
  finish(job_key, job_id, 'cancelled', now)
  redis.call('HINCRBY', KEYS[10], 'cancelled', 1)
  event.status = 'cancelled'
elseif A.retryable and attempt < max_attempts then
  redis.call('HSET', job_key, 'avoid_node', node_id)
  if A.backoff_ms > 0 then
    local ready = now + A.backoff_ms
    set_status(job_key, job_id, 'queued')
    redis.call('HSET', job_key, 'node_id', '', 'not_before_ms', ready, 'updated_ms', now)
    redis.call('ZADD', KEYS[11], ready, job_id)
    event.not_before_ms = ready
  else
    requeue(job_key, job_id, now)
    redis.call('PUBLISH', NS.wake_channel, '')
  end
  redis.call('HINCRBY', KEYS[10], 'retried', 1)
  event.status = 'queued'
else
  finish(job_key, job_id, 'failed', now)
  redis.call('HINCRBY', KEYS[10], 'failed', 1)
  event.status = 'failed'
end
emit_state(events_key, job_key, event.status, json_object(event, { error = error_json }))
return reply_job(job_key, job_id)
