-- requeue_expired: the reaper's pass. Every running job whose lease deadline has passed goes
-- back to its place in the queue (its attempt recorded as lease_expired, retryable, and the
-- job avoiding that node), or fails when its attempts are used up, or ends cancelled when a
-- cancel was requested. Due delayed jobs are promoted too, so idle nodes are woken even when
-- nobody claims. Atomic, so reapers running at once never requeue a job twice.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running          running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:delayed
-- KEYS[8]     {ns}:stats
-- A (RequeueExpiredArgs)  limit (most jobs to handle in this call). The expired
--             ids are found here, so their keys are built from NS prefixes.
--
-- Returns the ids handled (requeued, failed or cancelled).
local now, limit = NOW, A.limit
local ctx = { now = now, running_key = KEYS[6], stats_key = KEYS[8] }
local wake = promote_due(KEYS[7], now, limit) > 0

local handled = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, limit)
for _, job_id in ipairs(expired) do
  local f = redis.call('HMGET', NS.job_prefix .. job_id, unpack(TAKE_BACK_FIELDS))
  if f[1] ~= 'running' then
    -- Gone or no longer running: a leftover index entry, not a lease.
    redis.call('ZREM', KEYS[6], job_id)
  elseif (tonumber(f[3]) or 0) > now then
    -- The hash is the truth; repair an index score that fell behind it.
    redis.call('ZADD', KEYS[6], f[3], job_id)
  else
    local status = take_back(job_id, f, CODE.lease_expired,
      'lease expired before the node finished the job', ctx)
    wake = wake or status == 'queued'
    handled[#handled + 1] = job_id
  end
end
if wake then
  redis.call('PUBLISH', NS.wake_channel, '')
end
return handled
