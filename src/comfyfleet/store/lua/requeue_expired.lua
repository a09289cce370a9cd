-- requeue_expired: the reaper's pass. Every running job whose lease deadline has passed goes
-- back to its place in the queue (its attempt recorded as lease_expired, retryable), or fails
-- when its attempts are used up, or ends cancelled when a cancel was requested. Due delayed
-- jobs are promoted too, so idle nodes are woken even when nobody claims. Atomic, so reapers
-- running at once never requeue a job twice.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running          running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:delayed
-- KEYS[8]     {ns}:stats
-- ARGV[1]     now (ms)
-- ARGV[2]     most jobs to handle in this call
-- ARGV[3]     event stream MAXLEN (approximate)
-- ARGV[4]     retention of a finished job's hash and events (ms)
-- ARGV[5]     job key prefix ({ns}:job:)        \
-- ARGV[6]     events key prefix ({ns}:events:)   | the expired ids are found here, so their
-- ARGV[7]     queue key prefix ({ns}:queue:)     | keys are built from these prefixes (same
-- ARGV[8]     owned key prefix ({ns}:owned:)    /  hash tag, still Cluster-legal)
-- ARGV[9]     wake channel
--
-- Returns the ids handled (requeued, failed or cancelled).
local now, limit, maxlen, retention = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local job_prefix, events_prefix, queue_prefix, owned_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local wake = promote_due(KEYS[7], job_prefix, queue_prefix, now, limit) > 0

local function expire_one(job_id, f)
  local job_key, events_key = job_prefix .. job_id, events_prefix .. job_id
  local node_id, attempt = f[2], tonumber(f[4]) or 0
  local error_json = json_object(
    { code = 'lease_expired', message = 'lease expired before the node finished the job',
      retryable = true, node_id = node_id },
    { details = '{}' })
  append_history(job_key, node_id, now, 'lease_expired', error_json)
  drop_lease(job_key, job_id, KEYS[6], owned_prefix .. node_id)
  redis.call('HSET', job_key, 'error', error_json)
  redis.call('HINCRBY', KEYS[8], 'expired', 1)
  local event = { node_id = node_id, attempt = attempt, at_ms = now }
  if f[6] == '1' then
    finish(job_key, job_id, events_key, 'cancelled', now, retention)
    redis.call('HINCRBY', KEYS[8], 'cancelled', 1)
    event.status = 'cancelled'
  elseif attempt < (tonumber(f[5]) or 1) then
    requeue(job_key, job_id, queue_prefix .. f[7], now)
    redis.call('HINCRBY', KEYS[8], 'retried', 1)
    wake = true
    event.status = 'queued'
  else
    finish(job_key, job_id, events_key, 'failed', now, retention)
    redis.call('HINCRBY', KEYS[8], 'failed', 1)
    event.status = 'failed'
  end
  emit(events_key, maxlen, 'state', json_object(event, { error = error_json }))
end

local handled = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, limit)
for _, job_id in ipairs(expired) do
  local f = redis.call('HMGET', job_prefix .. job_id, 'status', 'node_id', 'lease_deadline_ms',
    'attempts', 'max_attempts', 'cancel_requested', 'pool')
  if f[1] ~= 'running' then
    -- Gone or no longer running: a leftover index entry, not a lease.
    redis.call('ZREM', KEYS[6], job_id)
  elseif (tonumber(f[3]) or 0) > now then
    -- The hash is the truth; repair an index score that fell behind it.
    redis.call('ZADD', KEYS[6], f[3], job_id)
  else
    expire_one(job_id, f)
    handled[#handled + 1] = job_id
  end
end
if wake then
  redis.call('PUBLISH', ARGV[9], '')
end
return handled
