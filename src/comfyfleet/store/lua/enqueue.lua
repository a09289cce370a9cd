-- enqueue: create a queued job at the back of its priority band, once per idempotency key.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:job:<id>          the new job's hash
-- KEYS[7]     {ns}:jobs              listing index (score seq)
-- KEYS[8]     {ns}:queue:<pool>      the job's pool queue
-- KEYS[9]     {ns}:seq               FIFO sequence counter
-- KEYS[10]    {ns}:events:<id>       the job's event stream
-- KEYS[11]    {ns}:stats             counters
-- KEYS[12]    {ns}:idem:<key>        optional: idempotency key -> job id
-- ARGV[1]     now (ms)
-- ARGV[2]     job id
-- ARGV[3]     idempotency TTL (ms)
-- ARGV[4]     event stream MAXLEN (approximate)
-- ARGV[5]     wake channel (pub/sub hint for idle nodes)
-- ARGV[6]     job key prefix ({ns}:job:) -- the job an idempotency key names is only known
--             here, so its key is built in the script (same hash tag, still Cluster-legal)
-- ARGV[7]     queue bound: refuse when the pool's queue already holds this many jobs
--             (0: no bound). Retries and requeues are never refused: they were accepted.
-- ARGV[8..]   field, value pairs of the job hash (Job.to_fields; seq is assigned here)
--
-- Returns {'ok', fields} when created, {'exists', fields} for a known idempotency key,
-- {'conflict'} when the job id is taken, {'full', depth} when the queue is at its bound.
local now = tonumber(ARGV[1])
local job_key, job_id = KEYS[6], ARGV[2]

if KEYS[12] then
  local existing = redis.call('GET', KEYS[12])
  -- A key whose job already expired (retention) no longer protects anything: reuse it.
  if existing and redis.call('EXISTS', ARGV[6] .. existing) == 1 then
    return { 'exists', redis.call('HGETALL', ARGV[6] .. existing) }
  end
end
if redis.call('EXISTS', job_key) == 1 then
  return { 'conflict' }
end
local bound = tonumber(ARGV[7])
if bound > 0 then
  local depth = redis.call('ZCARD', KEYS[8])
  if depth >= bound then
    return { 'full', depth }
  end
end

local fields = {}
for i = 8, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job_key, unpack(fields))
local seq = redis.call('INCR', KEYS[9])
redis.call('HSET', job_key, 'seq', seq, 'status', 'queued', 'created_ms', now, 'updated_ms', now)
set_status(job_key, job_id, 'queued')

local f = redis.call('HMGET', job_key, 'priority', 'pool')
redis.call('ZADD', KEYS[8], queue_score(f[1], seq), job_id)
redis.call('ZADD', KEYS[7], seq, job_id)
if KEYS[12] then
  redis.call('SET', KEYS[12], job_id, 'PX', ARGV[3])
end
redis.call('HINCRBY', KEYS[11], 'enqueued', 1)
emit(KEYS[10], ARGV[4], 'state', json_object(
  { status = 'queued', pool = f[2], priority = tonumber(f[1]), seq = seq, at_ms = now }))
redis.call('PUBLISH', ARGV[5], f[2])
return reply_job(job_key)
