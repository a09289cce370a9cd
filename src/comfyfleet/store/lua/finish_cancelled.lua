-- finish_cancelled: the owner of a running job reports it stopped; the job is cancelled.
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
local attempt = tonumber(redis.call('HGET', job_key, 'attempts')) or 0
append_history(job_key, node_id, now, 'cancelled', nil)
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
finish(job_key, job_id, 'cancelled', now)
redis.call('HINCRBY', KEYS[10], 'cancelled', 1)
emit_state(events_key, job_key, 'cancelled', json_object(
  { status = 'cancelled', node_id = node_id, attempt = attempt, at_ms = now }))
return reply_job(job_key, job_id)
