-- enqueue: create a queued job at the back of its priority band in its tenant's queue of
-- its pool and capability class (see push_job in _lib.lua), once per idempotency key.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>          the new job's hash
-- KEYS[7]     {ns}:depth             pool -> queued jobs (the bound is checked against it)
-- KEYS[8]     {ns}:seq               FIFO sequence counter
-- KEYS[9]     {ns}:events:<id>       the job's event stream (not created here: open_log)
-- KEYS[10]    {ns}:stats             counters
-- KEYS[11]    {ns}:tenant:<owner>    the job's tenant: max_queued (absent: no bound) and
--                                    the live `queued` count set_status keeps
-- KEYS[12]    {ns}:jobs:by:<owner>   the owner's listing index (score seq)
-- KEYS[13]    {ns}:idem:<owner>:<key> optional: the owner's idempotency key -> job id
-- A (EnqueueArgs)  job_id, idempotency_ttl_ms, queue_limit (0: no bound; retries
--             and requeues are never refused: they were accepted), fields (Job.to_fields;
--             its status is written by set_status, which counts the job for its tenant).
--             The job an idempotency key names is only known here, so its key is built from
--             NS.job_prefix (same hash tag, still Cluster-legal).
--
-- Returns {'ok', fields, queue position (0: next)} when created, {'exists', fields} for a
-- known idempotency key, {'conflict'} when the job id is taken, {'full', depth} when the
-- queue is at its bound, {'quota', limit name, limit, count} when the tenant is at its
-- max_queued, {'quota', 'rate', rate, retry_after_ms} past its submit rate,
-- {'denied', limit, allowed} for a workflow, pool or priority its limits do not allow
-- (_quota.lua).
local now = NOW
local job_key, job_id = KEYS[6], A.job_id

if KEYS[13] then
  local existing = redis.call('GET', KEYS[13])
  -- A key whose job already expired (retention) no longer protects anything: reuse it.
  if existing and redis.call('EXISTS', NS.job_prefix .. existing) == 1 then
    return { 'exists', job_fields(NS.job_prefix .. existing, existing) }
  end
end
if redis.call('EXISTS', job_key) == 1 then
  return { 'conflict' }
end
if A.queue_limit > 0 then
  local depth = tonumber(redis.call('HGET', KEYS[7], A.fields.pool)) or 0
  if depth >= A.queue_limit then
    return { 'full', depth }
  end
end

local quota = redis.call('HMGET', KEYS[11], 'max_queued', 'queued')
local max_queued, queued = tonumber(quota[1]), tonumber(quota[2]) or 0
if max_queued and queued >= max_queued then
  return { 'quota', 'max_queued', max_queued, queued }
end
-- The tenant's other limits, last: it takes a submit token only for a job created now.
local refused = admit(KEYS[11], A.fields, now)  -- _quota.lua
if refused then
  return refused
end

local fields = {}
for name, value in pairs(A.fields) do
  if name ~= 'status' then
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end
redis.call('HSET', job_key, unpack(fields))
local seq = redis.call('INCR', KEYS[8])
-- No updated_ms: until the job changes it equals created_ms (models/job.py).
redis.call('HSET', job_key, 'seq', seq, 'created_ms', now)
set_status(job_key, job_id, 'queued')

push_job(job_key, job_id)
redis.call('ZADD', KEYS[12], seq, job_id)
if KEYS[13] then
  redis.call('SET', KEYS[13], job_id, 'PX', A.idempotency_ttl_ms)
end
redis.call('HINCRBY', KEYS[10], 'enqueued', 1)
-- No event log yet: the `queued` event is written when the log is opened (open_log in
-- _lib.lua), which readers see meanwhile (store/events.py).
redis.call('PUBLISH', NS.wake_channel, A.fields.pool)
-- The position too (among its owner's jobs of its class): the submit's answer shows it, and
-- a read of its own was a round trip.
local f = redis.call('HMGET', job_key, 'pool', 'capability', 'owner')
local queue = queue_key(f[1], class_of(f[2]), owner_of(f[3]))
return { 'ok', job_fields(job_key, job_id), redis.call('ZRANK', queue, job_id) }
