-- renew: the owner of a running job pushes its lease deadline to now + lease.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running          running jobs (score lease deadline ms)
-- KEYS[8]     {ns}:events:<id>
-- ARGV[1]     now (ms)
-- ARGV[2]     job id
-- ARGV[3]     node id claiming ownership
-- ARGV[4]     lease (ms)
-- ARGV[5]     event stream MAXLEN (approximate)
--
-- Returns 1 when renewed, 0 when the caller does not hold the lease of a running job (a
-- renewal after the reaper took the job back must not resurrect the old lease).
local now, job_id, node_id = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if owner_problem(KEYS[6], node_id) then
  return 0
end
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[6], 'lease_deadline_ms', deadline, 'updated_ms', now)
redis.call('ZADD', KEYS[7], deadline, job_id)
emit(KEYS[8], ARGV[5], 'lease', json_object(
  { node_id = node_id, lease_deadline_ms = deadline, at_ms = now }))
return 1
