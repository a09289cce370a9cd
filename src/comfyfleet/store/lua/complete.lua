-- complete: the owner of a running job records its outputs; the job succeeds, once.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running
-- KEYS[8]     {ns}:owned:<node>
-- KEYS[9]     {ns}:events:<id>
-- KEYS[10]    {ns}:stats
-- ARGV[1]     now (ms)
-- ARGV[2]     job id
-- ARGV[3]     node id claiming ownership
-- ARGV[4]     outputs: JSON list of OutputRef
-- ARGV[5]     retention of the finished job's hash and events (ms)
-- ARGV[6]     event stream MAXLEN (approximate)
--
-- Returns {'ok', fields}, or {'missing'} / {'terminal', status} /
-- {'not_owner', status, owner} -- a stale owner never overwrites the outcome.
local now, job_id, node_id = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local job_key = KEYS[6]
local problem = owner_problem(job_key, node_id)
if problem then
  return problem
end
local attempt = tonumber(redis.call('HGET', job_key, 'attempts')) or 0
append_history(job_key, node_id, now, 'succeeded', nil)
drop_lease(job_key, job_id, KEYS[7], KEYS[8])
redis.call('HSET', job_key, 'outputs', ARGV[4], 'error', '')
finish(job_key, job_id, KEYS[9], 'succeeded', now, ARGV[5])
redis.call('HINCRBY', KEYS[10], 'succeeded', 1)
emit(KEYS[9], ARGV[6], 'state', json_object(
  { status = 'succeeded', node_id = node_id, attempt = attempt, at_ms = now },
  { outputs = ARGV[4] }))
return reply_job(job_key)
