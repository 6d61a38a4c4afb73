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
  local first_at = now
  -- one HSET for every field this update sets
  local fields = {'last_at', now}
  if is_new then
    fields[#fields + 1], fields[#fields + 2] = 'source', u.src
    fields[#fields + 1], fields[#fields + 2] = 'call_id', u.call
  else
    first_at = redis.call('HGET', summary, 'first_at')
  end
  if u.set then
    for field, value in pairs(u.set) do
      fields[#fields + 1], fields[#fields + 2] = field, value
    end
  end
  redis.call('HSET', summary, unpack(fields))
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
    local health = {}
    for field, value in pairs(u.health) do
      health[#health + 1], health[#health + 2] = field, value
    end
    redis.call('HSET', p .. ':health', unpack(health))
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

-- The accept script's journal (service/accept.py): `head` is the update's plain parts
-- joined by US (\31): prefix, source, call id, now in ms, ttl, cap, event key, vendor;
-- `entry` the entry. Two arguments, no JSON to decode: the ingress's hot path stays short.
-- A duplicate (`written` 0) is only counted. Per-minute counters and "last accepted" are
-- the ingress's own to batch (callhook/journal/tally.py).
local function journal_accept(written, head, entry)
  local parts = {}
  for part in string.gmatch(head .. '\31', '([^\31]*)\31') do
    parts[#parts + 1] = part
  end
  local u = {
    p = parts[1], src = parts[2], call = parts[3], now = parts[4], ttl = parts[5],
    cap = parts[6],
  }
  if written == 1 then
    u.entry, u.ekey, u.set, u.incr = entry, parts[7], {vendor = parts[8]}, {events = 1}
  else
    u.incr = {dups = 1}
    u.incr['dup:' .. parts[7]] = 1
  end
  local ok, problem = pcall(journal_write, u)
  if ok then
    return nil
  end
  return tostring(problem)
end
