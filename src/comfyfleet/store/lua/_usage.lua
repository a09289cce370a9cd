-- Usage accounting (store/usage.py): what each owner's jobs cost, per workflow and day,
-- recorded by finish() in _lib.lua, so in the same atomic step as the job's end. Prepended
-- to every job script after _observe.lua. Keys from keys.py, passed in NS (same hash slot):
--   NS.usage_prefix  {ns}:usage:<day> HASH, day = whole days since the epoch (UTC) of the
--                    job's end; field "<owner>\31<workflow>\31<measure>"; expires
--                    NS.usage_keep_ms after the day ends
--   NS.usage_total   {ns}:usage:total HASH, field "<owner>\31<measure>": since the
--                    namespace began, for /metrics (no workflow: bounded by owners)
-- Measures: succeeded | failed | cancelled (jobs ended so), gpu_ms (the sum of the job's
-- attempts, each from its start on a node to its end: history's started_ms..ended_ms; a job
-- that succeeded at its first attempt has no history stored: started_ms..now),
-- queue_ms (the rest of its life: created..finished minus gpu_ms), output_bytes.

local DAY_MS = 86400000

local function usage_of(job_key, status, now)
  local f = redis.call('HMGET', job_key, 'owner', 'workflow', 'created_ms', 'history', 'outputs',
    'started_ms')
  local gpu, bytes = 0, 0
  if f[4] and f[4] ~= '' and f[4] ~= '[]' then
    for _, r in ipairs(cjson.decode(f[4])) do
      if type(r.started_ms) == 'number' and type(r.ended_ms) == 'number' then
        gpu = gpu + math.max(0, r.ended_ms - r.started_ms)
      end
    end
  elseif status == 'succeeded' and tonumber(f[6]) then
    gpu = math.max(0, now - tonumber(f[6]))
  end
  if status == 'succeeded' and f[5] and f[5] ~= '' then
    for _, o in ipairs(cjson.decode(f[5])) do
      bytes = bytes + (tonumber(o.size) or 0)
    end
  end
  local queue = math.max(0, now - (tonumber(f[3]) or now) - gpu)
  local owner = (f[1] and f[1] ~= '') and f[1] or 'admin'  -- jobs from before owners
  local workflow = (f[2] and f[2] ~= '') and f[2] or '_graph'
  return owner, workflow, { [status] = 1, gpu_ms = gpu, queue_ms = queue, output_bytes = bytes }
end

local function record_usage(job_key, status, now)
  local owner, workflow, measures = usage_of(job_key, status, now)
  local day = math.floor(now / DAY_MS)
  local day_key = NS.usage_prefix .. string.format('%d', day)
  local base = owner .. '\31' .. workflow .. '\31'
  for measure, value in pairs(measures) do
    redis.call('HINCRBY', day_key, base .. measure, value)
    redis.call('HINCRBY', NS.usage_total, owner .. '\31' .. measure, value)
  end
  redis.call('PEXPIRE', day_key, (day + 1) * DAY_MS + NS.usage_keep_ms - now)
end
