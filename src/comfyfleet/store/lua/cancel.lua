-- cancel: a queued (or backing-off) job is cancelled at once; a running one gets
-- cancel_requested and its id is published on the cancel channel, and stays running until
-- its owner calls finish_cancelled; a finished job is left as it is.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>
-- KEYS[7]     {ns}:delayed
-- KEYS[8]     {ns}:events:<id>
-- KEYS[9]     {ns}:stats
-- A (CancelArgs)  job_id
--
-- Returns {'ok', fields} or {'missing'}.
local now, job_id = NOW, A.job_id
local job_key, events_key = KEYS[6], KEYS[8]
local f = redis.call('HMGET', job_key, 'status', 'node_id', 'cancel_requested', 'pool',
  'capability', 'owner')
if not f[1] then
  return { 'missing' }
end
if f[1] == 'queued' then
  pull_job(f[4], class_of(f[5]), owner_of(f[6]), job_id)
  redis.call('ZREM', KEYS[7], job_id)
  finish(job_key, job_id, 'cancelled', now)
  redis.call('HINCRBY', KEYS[9], 'cancelled', 1)
  emit_state(events_key, job_key, 'cancelled', json_object({ status = 'cancelled', at_ms = now }))
elseif f[1] == 'running' then
  if f[3] ~= '1' then
    redis.call('HSET', job_key, 'cancel_requested', '1', 'updated_ms', now)
    emit(events_key, 'cancel_requested', json_object({ node_id = f[2], at_ms = now }))
  end
  -- Published on every call: a repeated cancel re-sends the hint a node may have missed.
  redis.call('PUBLISH', NS.cancel_channel, job_id)
end
return reply_job(job_key, job_id)
