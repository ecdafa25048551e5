-- Fold one user's events (all in one Kafka partition, in offset order) into their model.
-- Atomic, and touches one Redis Cluster slot: every key shares the user's hash tag.
--
-- KEYS: 1 state (hash), 2 recent (zset item -> last time), 3 strength (hash item -> sum),
--       4 tags (hash tag -> "affinity:time"), 5 events (hash name -> count),
--       6 seen message ids (zset), 7 outbox (list of pending tenant updates)
-- ARGV[1]: config {rating_weight, rating_prior_mean, rating_prior_count, recent_limit,
--          tag_half_life_ms, dedupe_window, cooccurrence_window, direct: return the updates
--          without keeping an outbox (a replay into a fresh namespace, which is thrown away
--          if it fails, needs no crash recovery)}
-- ARGV[2]: events [{partition (its id: "3", or "3.1" in epoch 1), offset, message_id,
--          time_ms, event (name), item_id|false, weight|false, rating|false, tags,
--          traits|false}]
-- Returns the outbox: the tenant-level updates {partition, offset, item_id, strength,
-- time_ms, pairs (the items it co-occurs with)} (trending, popularity, co-occurrence) not
-- yet confirmed as applied, including ones left by an attempt that crashed.
--
-- An event at or below the partition offset this user has applied is a redelivery and
-- changes nothing; a messageId seen before (a producer's duplicate) changes nothing.
-- The result does not depend on how events are cut into batches: every rule below
-- applies per event. Scalars of the state hash are read once and written back once.

local state, recent, strength, tags, counts, seen, outbox =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local cfg = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])

local function fmt(n)  -- integers without exponent notation
  return string.format('%d', n)
end

local S = {}  -- the state hash's scalars, as numbers
do
  local flat = redis.call('HGETALL', state)
  for i = 1, #flat, 2 do
    if flat[i] ~= 'traits' then S[flat[i]] = tonumber(flat[i + 1]) end
  end
end
local changed = false
local event_counts = {}
local recent_size = redis.call('ZCARD', recent)

local tag_cache = {}  -- tag -> {value, at}: read once per call, written back at the end
local direct_updates = {}

local function decayed_add(field, amount, t)
  local entry = tag_cache[field]
  if entry == nil then
    local stored = redis.call('HGET', tags, field)
    if stored then
      local sep = string.find(stored, ':', 1, true)
      entry = {tonumber(string.sub(stored, 1, sep - 1)), tonumber(string.sub(stored, sep + 1))}
    else
      entry = {0, t}
    end
    tag_cache[field] = entry
  end
  local value, at = entry[1], entry[2]
  if t >= at then
    value = value * math.pow(2, -(t - at) / cfg.tag_half_life_ms) + amount
    at = t
  else
    value = value + amount * math.pow(2, -(at - t) / cfg.tag_half_life_ms)
  end
  -- Rounded as it is stored, so the result does not depend on how events are batched.
  entry[1], entry[2] = tonumber(string.format('%.10g', value)), at
end

local function strength_of(ev)
  if not ev.rating then return ev.weight end
  local sum, count = S.rating_sum or 0, S.rating_count or 0
  local mean = cfg.rating_prior_mean
  local prior = cfg.rating_prior_count
  if count + prior > 0 then mean = (sum + cfg.rating_prior_mean * prior) / (count + prior) end
  S.rating_sum, S.rating_count = sum + ev.rating, count + 1
  return (ev.rating - mean) * cfg.rating_weight
end

-- Strengths as stored (an absent item is 0), read at most once per call: every change to
-- the strength hash in this call goes through strength_add / strength_drop below.
local strength_known = {}

local function strength_add(item, amount)
  strength_known[item] = tonumber(redis.call('HINCRBYFLOAT', strength, item, amount))
end

local function strength_drop(item)
  redis.call('HDEL', strength, item)
  strength_known[item] = 0
end

local function pairs_for(item)
  -- The user's latest positively engaged items, before this one, pair with it.
  local latest = redis.call('ZREVRANGE', recent, 0, cfg.cooccurrence_window * 2)
  if #latest == 0 then return {} end
  local unknown = {}
  for _, other in ipairs(latest) do
    if strength_known[other] == nil then unknown[#unknown + 1] = other end
  end
  if #unknown > 0 then
    local stored = redis.call('HMGET', strength, unpack(unknown))
    for i, other in ipairs(unknown) do strength_known[other] = tonumber(stored[i] or '0') end
  end
  local found = {}
  for _, other in ipairs(latest) do
    if #found >= cfg.cooccurrence_window then break end
    if other ~= item and strength_known[other] > 0 then found[#found + 1] = other end
  end
  return found
end

local function apply(ev)
  S.events = (S.events or 0) + 1
  if not S.first_ms or ev.time_ms < S.first_ms then S.first_ms = ev.time_ms end
  if not S.last_ms or ev.time_ms > S.last_ms then S.last_ms = ev.time_ms end
  event_counts[ev.event] = (event_counts[ev.event] or 0) + 1
  if ev.traits then
    local traits = cjson.decode(redis.call('HGET', state, 'traits') or '{}')
    for k, v in pairs(ev.traits) do traits[k] = v end
    redis.call('HSET', state, 'traits', cjson.encode(traits))
  end
  if not ev.item_id then return end

  local s = strength_of(ev)
  local pairs_with = {}
  if s > 0 and cfg.cooccurrence_window > 0 then pairs_with = pairs_for(ev.item_id) end
  recent_size = recent_size + redis.call('ZADD', recent, 'GT', ev.time_ms, ev.item_id)
  strength_add(ev.item_id, s)
  for _, tag in ipairs(ev.tags) do decayed_add(tag, s, ev.time_ms) end

  if recent_size > cfg.recent_limit then
    local dropped = redis.call('ZPOPMIN', recent, recent_size - cfg.recent_limit)
    for i = 1, #dropped, 2 do strength_drop(dropped[i]) end
    recent_size = cfg.recent_limit
  end

  if s > 0 then
    local update = cjson.encode({
      partition = ev.partition, offset = ev.offset, item_id = ev.item_id, strength = s,
      time_ms = ev.time_ms, pairs = pairs_with,
    })
    if cfg.direct then
      direct_updates[#direct_updates + 1] = update
    else
      redis.call('RPUSH', outbox, update)
    end
  end
end

local added_ids = 0
for _, ev in ipairs(events) do
  local applied_field = 'offset:' .. ev.partition
  if ev.offset > (S[applied_field] or -1) then
    S[applied_field] = ev.offset
    changed = true
    if redis.call('ZADD', seen, 'NX', ev.time_ms, ev.message_id) == 1 then
      added_ids = added_ids + 1
      apply(ev)
    end
  end
end

if changed then
  local flat = {}
  for field, value in pairs(S) do
    flat[#flat + 1] = field
    if field == 'rating_sum' then
      flat[#flat + 1] = string.format('%.10g', value)
    else
      flat[#flat + 1] = fmt(value)
    end
  end
  redis.call('HSET', state, unpack(flat))
  for name, n in pairs(event_counts) do redis.call('HINCRBY', counts, name, n) end
end
local tag_fields = {}
for field, entry in pairs(tag_cache) do
  tag_fields[#tag_fields + 1] = field
  tag_fields[#tag_fields + 1] = string.format('%.10g', entry[1]) .. ':' .. fmt(entry[2])
end
for first = 1, #tag_fields, 1000 do  -- unpack() has a limit on how many values it takes
  redis.call('HSET', tags, unpack(tag_fields, first, math.min(first + 999, #tag_fields)))
end

if added_ids > 0 then
  local extra = redis.call('ZCARD', seen) - cfg.dedupe_window
  if extra > 0 then redis.call('ZREMRANGEBYRANK', seen, 0, extra - 1) end
end

if cfg.direct then return direct_updates end
return redis.call('LRANGE', outbox, 0, -1)
