-- Fold one user's events (all in one Kafka partition, in offset order) into their model.
-- Atomic, and touches one Redis Cluster slot: every key shares the user's hash tag.
--
-- KEYS: 1 state (hash), 2 recent (zset item -> last time), 3 strength (hash item -> sum),
--       4 tags (hash tag -> "affinity:time"), 5 events (hash name -> count),
--       6 seen message ids (zset), 7 outbox (list of pending tenant updates)
-- ARGV[1]: config {rw rating weight, pm prior mean, pc prior count, rl recent limit,
--          hl tag half-life ms, dw dedupe window, cw co-occurrence window}
-- ARGV[2]: events [{p partition, o offset, id messageId, t time ms, e name, it item|false,
--          w weight|false, r rating|false, tg tags, tr traits|false}]
-- Returns the outbox: the tenant-level updates (trending, popularity, co-occurrence) not
-- yet confirmed as applied, including ones left by an attempt that crashed.
--
-- An event at or below the partition offset this user has applied is a redelivery and
-- changes nothing; a messageId seen before (a producer's duplicate) changes nothing.

local state, recent, strength, tags, counts, seen, outbox =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local cfg = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])

local function num(value, default)
  if value then return tonumber(value) end
  return default
end

local function fmt(n)  -- integers without exponent notation
  return string.format('%d', n)
end

local function decayed_add(key, field, amount, t)
  local stored = redis.call('HGET', key, field)
  local value, at = 0, t
  if stored then
    local sep = string.find(stored, ':', 1, true)
    value, at = tonumber(string.sub(stored, 1, sep - 1)), tonumber(string.sub(stored, sep + 1))
  end
  if t >= at then
    value = value * math.pow(2, -(t - at) / cfg.hl) + amount
    at = t
  else
    value = value + amount * math.pow(2, -(at - t) / cfg.hl)
  end
  redis.call('HSET', key, field, string.format('%.10g', value) .. ':' .. fmt(at))
end

local function strength_of(ev)
  if not ev.r then return ev.w end
  local sum = num(redis.call('HGET', state, 'rating_sum'), 0)
  local count = num(redis.call('HGET', state, 'rating_count'), 0)
  local mean = cfg.pm
  if count + cfg.pc > 0 then mean = (sum + cfg.pm * cfg.pc) / (count + cfg.pc) end
  redis.call('HSET', state, 'rating_sum', string.format('%.10g', sum + ev.r),
    'rating_count', fmt(count + 1))
  return (ev.r - mean) * cfg.rw
end

local function apply(ev)
  redis.call('HINCRBY', state, 'events', 1)
  local first, last = redis.call('HGET', state, 'first_ms'), redis.call('HGET', state, 'last_ms')
  if not first or ev.t < tonumber(first) then redis.call('HSET', state, 'first_ms', fmt(ev.t)) end
  if not last or ev.t > tonumber(last) then redis.call('HSET', state, 'last_ms', fmt(ev.t)) end
  redis.call('HINCRBY', counts, ev.e, 1)
  if ev.tr then
    local traits = cjson.decode(redis.call('HGET', state, 'traits') or '{}')
    for k, v in pairs(ev.tr) do traits[k] = v end
    redis.call('HSET', state, 'traits', cjson.encode(traits))
  end
  if not ev.it then return end

  local s = strength_of(ev)
  local pairs_with = {}
  if s > 0 and cfg.cw > 0 then
    -- The user's latest positively engaged items, before this one, pair with it.
    for _, other in ipairs(redis.call('ZREVRANGE', recent, 0, cfg.cw * 2)) do
      if other ~= ev.it and #pairs_with < cfg.cw
          and num(redis.call('HGET', strength, other), 0) > 0 then
        pairs_with[#pairs_with + 1] = other
      end
    end
  end
  redis.call('ZADD', recent, 'GT', ev.t, ev.it)
  redis.call('HINCRBYFLOAT', strength, ev.it, s)
  for _, tag in ipairs(ev.tg) do decayed_add(tags, tag, s, ev.t) end

  local over = redis.call('ZCARD', recent) - cfg.rl
  if over > 0 then
    local dropped = redis.call('ZPOPMIN', recent, over)
    for i = 1, #dropped, 2 do redis.call('HDEL', strength, dropped[i]) end
  end

  if s > 0 then
    redis.call('RPUSH', outbox, cjson.encode(
      {p = ev.p, o = ev.o, it = ev.it, s = s, t = ev.t, co = pairs_with}))
  end
end

for _, ev in ipairs(events) do
  local applied_field = 'offset:' .. fmt(ev.p)
  if ev.o > num(redis.call('HGET', state, applied_field), -1) then
    redis.call('HSET', state, applied_field, fmt(ev.o))
    if not redis.call('ZSCORE', seen, ev.id) then
      redis.call('ZADD', seen, ev.t, ev.id)
      local extra = redis.call('ZCARD', seen) - cfg.dw
      if extra > 0 then redis.call('ZREMRANGEBYRANK', seen, 0, extra - 1) end
      apply(ev)
    end
  end
end

return redis.call('LRANGE', outbox, 0, -1)
