-- complete: the owner of a running job records its outputs; the job succeeds, once.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running
-- KEYS[8]     {ns}:owned:<node>
-- KEYS[9]     {ns}:events:<id>
-- KEYS[10]    {ns}:stats
-- A (CompleteArgs)  job_id, node_id (claiming ownership), attempt (of the lease; 0: any), outputs_json (a JSON
--             list of OutputRef)
--
-- Returns {'ok', fields}, or {'missing'} / {'terminal', status} /
-- {'not_owner', status, owner} -- a stale owner never overwrites the outcome.
local now, job_id, node_id = NOW, A.job_id, A.node_id
local job_key = KEYS[6]
local problem = owner_problem(job_key, node_id, A.attempt)
if problem then
  return problem
end
local attempt = tonumber(redis.call('HGET', job_key, 'attempts')) or 0
append_history(job_key, node_id, now, 'succeeded', nil)
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
redis.call('HSET', job_key, 'outputs', A.outputs_json, 'error', '')
finish(job_key, job_id, 'succeeded', now)
redis.call('HINCRBY', KEYS[10], 'succeeded', 1)
-- The folded log keeps the event without its outputs: the hash holds them (store/events.py).
local ended = { status = 'succeeded', node_id = node_id, attempt = attempt, at_ms = now }
emit_state(KEYS[9], job_key, 'succeeded', json_object(ended, { outputs = A.outputs_json }),
  json_object(ended))
return reply_job(job_key, job_id)
