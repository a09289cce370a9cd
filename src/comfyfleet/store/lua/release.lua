-- release: the owner hands a running job back untried (drain). It goes back to its place
-- in the queue and the attempt is not counted (attempts - 1, no history record). A job
-- whose cancel was requested ends cancelled instead.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running
-- KEYS[8]     {ns}:owned:<node>
-- KEYS[9]     {ns}:events:<id>
-- KEYS[10]    {ns}:stats
-- A (OwnerArgs)  job_id, node_id (claiming ownership), attempt (of the lease; 0: any)
--
-- Returns {'ok', fields}, or {'missing'} / {'terminal', status} / {'not_owner', status, owner}.
local now, job_id, node_id = NOW, A.job_id, A.node_id
local job_key, events_key = KEYS[6], KEYS[9]
local problem = owner_problem(job_key, node_id, A.attempt)
if problem then
  return problem
end
local f = redis.call('HMGET', job_key, 'attempts', 'cancel_requested')
local attempts = math.max((tonumber(f[1]) or 1) - 1, 0)
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
redis.call('HSET', job_key, 'attempts', attempts)
if attempts == 0 then
  -- Never really started: look like a job that was never claimed.
  redis.call('HSET', job_key, 'started_ms', '')
end

local event = { node_id = node_id, attempt = attempts, reason = 'released', at_ms = now }
if f[2] == '1' then
  finish(job_key, job_id, 'cancelled', now)
  redis.call('HINCRBY', KEYS[10], 'cancelled', 1)
  event.status = 'cancelled'
else
  requeue(job_key, job_id, now)
  redis.call('HINCRBY', KEYS[10], 'released', 1)
  redis.call('PUBLISH', NS.wake_channel, '')
  event.status = 'queued'
end
emit_state(events_key, job_key, event.status, json_object(event))
return reply_job(job_key, job_id)
