-- complete: the owner of a running job records its outputs; the job succeeds, once.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running
-- KEYS[8]     {ns}:owned:<node>
-- KEYS[9]     {ns}:events:<id>
-- KEYS[10]    {ns}:stats
-- A (CompleteArgs)  job_id, node_id (claiming ownership), attempt (of the lease; 0: any), outputs_json (a JSON
--             list of OutputRef), stored_outputs_json (the same without the keys that follow
--             from output_pool and output_tag; '': none do)
--
-- Returns {'ok', fields}, or {'missing'} / {'terminal', status} /
-- {'not_owner', status, owner} -- a stale owner never overwrites the outcome.
local now, job_id, node_id = NOW, A.job_id, A.node_id
local job_key = KEYS[6]
local problem = owner_problem(job_key, node_id, A.attempt)
if problem then
  return problem
end
local f = redis.call('HMGET', job_key, 'attempts', 'history', 'pool', 'started_ms')
local attempt = tonumber(f[1]) or 0
-- The hash leaves out what models/job.py derives from it: the history of a job that
-- succeeded at its first attempt, and output keys named after the attempt that stored them.
if attempt ~= 1 or (f[2] and f[2] ~= '' and f[2] ~= '[]') or not f[4] then
  append_history(job_key, node_id, now, 'succeeded', nil)
else
  redis.call('HDEL', job_key, 'history')  -- an empty one, of a job queued by an older version
end
local outputs = A.outputs_json
if A.stored_outputs_json ~= '' and A.output_pool == f[3]
    and A.output_tag == 'a' .. attempt .. '-' .. (f[4] or '') then
  outputs = A.stored_outputs_json
end
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
redis.call('HSET', job_key, 'outputs', outputs, 'error', '')
finish(job_key, job_id, 'succeeded', now)
redis.call('HINCRBY', KEYS[10], 'succeeded', 1)
-- The folded log keeps the event without its outputs: the hash holds them (store/events.py).
local ended = { status = 'succeeded', node_id = node_id, attempt = attempt, at_ms = now }
emit_state(KEYS[9], job_key, 'succeeded', json_object(ended, { outputs = A.outputs_json }),
  json_object(ended))
return reply_job(job_key, job_id)
