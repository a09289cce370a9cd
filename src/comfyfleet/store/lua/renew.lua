-- renew: the owner of a running job pushes its lease deadline to now + lease.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:running          running jobs (score lease deadline ms)
-- KEYS[8]     {ns}:events:<id>
-- A (RenewArgs)  job_id, node_id (claiming ownership), lease_ms, attempt (of the
--             lease; 0: any)
--
-- Returns 1 when renewed, 0 when the caller does not hold the lease of a running job (a
-- renewal after the reaper took the job back must not resurrect the old lease).
local now, job_id, node_id = NOW, A.job_id, A.node_id
if owner_problem(KEYS[6], node_id, A.attempt) then
  return 0
end
local deadline = now + A.lease_ms
redis.call('HSET', KEYS[6], 'lease_deadline_ms', deadline, 'updated_ms', now)
redis.call('ZADD', KEYS[7], deadline, job_id)
emit(KEYS[8], 'lease', json_object(
  { node_id = node_id, lease_deadline_ms = deadline, at_ms = now }))
return 1
