-- The call journal's one write (callhook/journal/__init__.py has the key layout).
-- Prepended to the scripts that journal: the accept script (service/accept.py) and the
-- plain append (callhook/journal/writer.py). `u` is an update built by `journal_update`:
--   p       key prefix ({namespace}:journal)      src, call   the call
--   now     milliseconds since the epoch           ttl         seconds kept after this write
--   cap     entries kept per call                  entry       one journal entry (JSON text)
--   ekey    an event key to index                  status      the record's status now
--   set     summary fields to set                  incr        summary fields to increment
--   failed  true: index the call as having failures
--   stats   per-minute counters to increment       health      health fields to set
local function journal_write(u)
  local p = u.p
  local member = u.src .. ':' .. u.call
  local summary = p .. ':summary:' .. member
  local now = tonumber(u.now)
  local ttl = tonumber(u.ttl)
  local idx = p .. ':idx:'
  local cutoff = '(' .. (now - ttl * 1000)
  local is_new = redis.call('HSETNX', summary, 'first_at', now) == 1
  if is_new then
    redis.call('HSET', summary, 'source', u.src, 'call_id', u.call)
  end
  local first_at = redis.call('HGET', summary, 'first_at')
  redis.call('HSET', summary, 'last_at', now)
  if u.entry then
    local list = p .. ':call:' .. member
    local length = redis.call('RPUSH', list, u.entry)
    local cap = tonumber(u.cap)
    if length > cap then
      redis.call('LTRIM', list, length - cap, -1)
      redis.call('HINCRBY', summary, 'trimmed', length - cap)
    end
    redis.call('EXPIRE', list, ttl)
  end
  if u.set then
    for field, value in pairs(u.set) do
      redis.call('HSET', summary, field, value)
    end
  end
  if u.incr then
    for field, by in pairs(u.incr) do
      redis.call('HINCRBY', summary, field, by)
    end
  end
  -- an index drops calls past the retention window whenever a call is added to it, and
  -- goes altogether when none has been for that long
  local function index(name)
    redis.call('ZADD', idx .. name, first_at, member)
    redis.call('ZREMRANGEBYSCORE', idx .. name, '-inf', cutoff)
    redis.call('EXPIRE', idx .. name, ttl)
  end
  if is_new then
    index('all')
    index('source:' .. u.src)
  end
  if u.status then
    local previous = redis.call('HGET', summary, 'status')
    if previous ~= u.status then
      if previous then
        redis.call('ZREM', idx .. 'status:' .. previous, member)
      end
      redis.call('HSET', summary, 'status', u.status)
      index('status:' .. u.status)
    end
  end
  if u.failed then
    index('failed')
  end
  redis.call('EXPIRE', summary, ttl)
  if u.ekey then
    redis.call('SET', p .. ':event:' .. u.src .. ':' .. u.ekey, u.call, 'EX', ttl)
  end
  if u.stats then
    local minute = p .. ':stats:' .. math.floor(now / 60000)
    for field, by in pairs(u.stats) do
      redis.call('HINCRBY', minute, field, by)
    end
    redis.call('EXPIRE', minute, 7200)
  end
  if u.health then
    for field, value in pairs(u.health) do
      redis.call('HSET', p .. ':health', field, value)
    end
  end
end

-- Journal `update` (JSON text) without ever failing the script that calls this: the
-- journal must not cost the work it describes. Returns nil, or the error as text.
local function journal(update)
  local ok, problem = pcall(function() journal_write(cjson.decode(update)) end)
  if ok then
    return nil
  end
  return tostring(problem)
end

-- One more duplicate of an accepted delivery: `update` is the one the delivery would have
-- been journaled with; only its counts are kept.
local function journal_duplicate(update)
  local ok, problem = pcall(function()
    local u = cjson.decode(update)
    local counts = {dups = 1}
    counts['dup:' .. u.ekey] = 1
    journal_write({
      p = u.p, src = u.src, call = u.call, now = u.now, ttl = u.ttl, cap = u.cap,
      incr = counts, stats = {['dup:' .. u.src] = 1},
    })
  end)
  if ok then
    return nil
  end
  return tostring(problem)
end
