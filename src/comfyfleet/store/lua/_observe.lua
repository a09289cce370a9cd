-- Fleet-wide histograms and ended-job counts (store/histograms.py explains why they live in
-- Redis). Prepended to every job script before _lib.lua, after HISTOGRAM_BOUNDS, which
-- scripts.py generates from histograms.SPECS. Keys from keys.py, passed in NS (same hash
-- slot as the job keys):
--   NS.hist         {ns}:hist, field "<histogram>\31<workflow>\31<pool>\31<bucket|sum|count>"
--   NS.stats_ended  {ns}:stats:ended, field "<workflow>\31<pool>\31<status>"
-- Values in seconds (attempts: a count); buckets are not cumulative here.

local function observe(metric, workflow, pool, value)
  local bounds = HISTOGRAM_BOUNDS[metric]
  local index = #bounds + 1
  for i, bound in ipairs(bounds) do
    if value <= bound then
      index = i
      break
    end
  end
  local base = metric .. '\31' .. workflow .. '\31' .. pool .. '\31'
  redis.call('HINCRBY', NS.hist, base .. index, 1)
  redis.call('HINCRBYFLOAT', NS.hist, base .. 'sum', string.format('%.6f', value))
  redis.call('HINCRBY', NS.hist, base .. 'count', 1)
end

-- The job's workflow ('_graph' for a raw graph) and pool, then the fields asked for.
local function job_labels(job_key, ...)
  local f = redis.call('HMGET', job_key, 'workflow', 'pool', ...)
  local workflow = f[1]
  if not workflow or workflow == '' then
    workflow = '_graph'
  end
  return workflow, (f[2] and f[2] ~= '') and f[2] or 'default', f
end

-- A claim: how long the job waited since it (re)entered the queue or its retry backoff
-- (its updated_ms, which every requeue and backoff stamps; a job never requeued has none,
-- and its created_ms is the time).
local function observe_claim(job_key, now)
  local workflow, pool, f = job_labels(job_key, 'updated_ms', 'created_ms')
  local since = tonumber(f[3]) or tonumber(f[4])
  if since then
    observe('queue_wait', workflow, pool, math.max(0, tonumber(now) - since) / 1000)
  end
end

-- A job ended with `status`: count it; observe end-to-end time, attempts, and the run
-- time of the attempt that ended it (when one was running).
local function observe_end(job_key, status, now)
  local workflow, pool, f = job_labels(job_key, 'created_ms', 'started_ms', 'attempts')
  redis.call('HINCRBY', NS.stats_ended, workflow .. '\31' .. pool .. '\31' .. status, 1)
  local created, started = tonumber(f[3]), tonumber(f[4])
  if created then
    observe('e2e', workflow, pool, math.max(0, tonumber(now) - created) / 1000)
  end
  if started then
    observe('run', workflow, pool, math.max(0, tonumber(now) - started) / 1000)
  end
  observe('attempts', workflow, pool, tonumber(f[5]) or 0)
end
