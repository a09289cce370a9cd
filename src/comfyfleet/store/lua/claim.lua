-- claim: pop up to `capacity` jobs (priority, then FIFO, across the given pools) and lease
-- them to one node, after moving due delayed jobs back into their queues.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running               running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:delayed               backing-off jobs (score ready ms)
-- KEYS[8]     {ns}:owned:<node>          the claiming node's jobs
-- KEYS[9]     {ns}:stats                 counters
-- KEYS[10..]  {ns}:queue:<pool>          one per pool the node serves
-- ARGV[1]     now (ms)
-- ARGV[2]     node id
-- ARGV[3]     capacity: most jobs to claim
-- ARGV[4]     lease (ms): the deadline is now + lease
-- ARGV[5]     event stream MAXLEN (approximate)
-- ARGV[6]     job key prefix ({ns}:job:)       \  popped ids are not known in advance, so
-- ARGV[7]     events key prefix ({ns}:events:)  > their keys are built here (same hash tag,
-- ARGV[8]     queue key prefix ({ns}:queue:)   /  still Cluster-legal)
-- ARGV[9]     most delayed jobs to promote in this call
-- ARGV[10]    wake channel: published when promoted jobs may suit other nodes
--
-- Returns a list of the claimed jobs' fields (HGETALL form), best first.
local now, node_id = tonumber(ARGV[1]), ARGV[2]
local capacity, deadline = tonumber(ARGV[3]), now + tonumber(ARGV[4])
local job_prefix, events_prefix = ARGV[6], ARGV[7]

if promote_due(KEYS[7], job_prefix, ARGV[8], now, ARGV[9]) > 0 then
  redis.call('PUBLISH', ARGV[10], '')
end

-- The best head across the pools; seq is global, so scores compare across pools.
local function best_head()
  local best_key, best_id, best_score
  for i = 10, #KEYS do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if head[1] and (not best_score or tonumber(head[2]) < best_score) then
      best_key, best_id, best_score = KEYS[i], head[1], tonumber(head[2])
    end
  end
  return best_key, best_id
end

local claimed = {}
while #claimed < capacity do
  local queue_key, job_id = best_head()
  if not queue_key then
    break
  end
  redis.call('ZREM', queue_key, job_id)
  local job_key = job_prefix .. job_id
  local f = redis.call('HMGET', job_key, 'status', 'attempts')
  if f[1] == 'queued' then
    local attempt = (tonumber(f[2]) or 0) + 1
    set_status(job_key, job_id, 'running')
    redis.call('HSET', job_key, 'node_id', node_id, 'attempts', attempt,
      'lease_deadline_ms', deadline, 'started_ms', now, 'updated_ms', now, 'not_before_ms', '')
    redis.call('ZADD', KEYS[6], deadline, job_id)
    redis.call('SADD', KEYS[8], job_id)
    redis.call('HINCRBY', KEYS[9], 'claimed', 1)
    emit(events_prefix .. job_id, ARGV[5], 'state', json_object(
      { status = 'running', node_id = node_id, attempt = attempt, lease_deadline_ms = deadline,
        at_ms = now }))
    claimed[#claimed + 1] = redis.call('HGETALL', job_key)
  else
    -- A queue entry whose job is gone or no longer queued: never runnable, so drop it, but
    -- count it so the drop is visible in stats.
    redis.call('HINCRBY', KEYS[9], 'stale', 1)
  end
end
return claimed
