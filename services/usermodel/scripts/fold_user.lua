-- Fold one user's events (all in one Kafka partition, in offset order) into their model.
-- Atomic, and touches one Redis Cluster slot: every key shares the user's hash tag.
--
-- KEYS: 1 state (hash), 2 recent (zset item -> last time), 3 strength (hash item -> sum),
--       4 tags (hash tag -> "affinity:time"), 5 events (hash name -> count),
--       6 seen message ids (zset id -> arrival time), 7 outbox (list of pending tenant
--       updates)
-- ARGV[1]: config {rating_weight, rating_prior_mean, rating_prior_count, recent_limit,
--          tag_half_life_ms, cooccurrence_window, dedupe_ids, dedupe_window_ms,
--          max_event_names, max_tags, max_traits, ttl_ms, direct: return the updates
--          without keeping an outbox (a replay into a fresh namespace, which is thrown away
--          if it fails, needs no crash recovery)}
-- ARGV[2]: events [{partition (its id: "3", or "3.1" in epoch 1), offset, message_id,
--          time_ms, arrival_ms (the Kafka record time), event (name), item_id|false,
--          weight|false, rating|false, tags, traits ([[name, value]] sorted)|false}]
-- Returns the outbox: the tenant-level updates {partition, offset, item_id, strength,
-- time_ms, pairs (the items it co-occurs with)} (trending, popularity, co-occurrence) not
-- yet confirmed as applied, including ones left by an attempt that crashed.
--
-- An event at or below the partition offset this user has applied is a redelivery and
-- changes nothing; a messageId among the user's last dedupe_ids arrivals within
-- dedupe_window_ms of arrival time (a producer's duplicate, a client's retry) changes
-- nothing.
-- Bounds: event names past max_event_names count as '(other)'; past max_tags, the tag
-- with the weakest absolute decayed affinity is dropped; new trait names past
-- max_traits are ignored; with ttl_ms, every key expires ttl_ms after the user's latest
-- event time, and an event arriving (Kafka record time) later than that finds the user
-- expired.
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

local OTHER = '(other)'
local LN2 = math.log(2)

-- Tags are read once per call and written back at the end. tag_cache holds the live
-- tags touched (all of them once the cap was reached): tag -> {value, at, rank, dirty};
-- rank orders by absolute affinity decayed to any common time.
local tag_cache, tag_gone, tag_count, tags_all = {}, {}, nil, false
local direct_updates = {}

local function tag_rank(value, at)
  if value == 0 then return -math.huge end
  return math.log(math.abs(value)) / LN2 + at / cfg.tag_half_life_ms
end

local function parse_tag(stored)
  local sep = string.find(stored, ':', 1, true)
  local value, at = tonumber(string.sub(stored, 1, sep - 1)), tonumber(string.sub(stored, sep + 1))
  return {value, at, tag_rank(value, at), false}
end

local function drop_weakest_tag()
  if not tags_all then
    local flat = redis.call('HGETALL', tags)
    for i = 1, #flat, 2 do
      if tag_cache[flat[i]] == nil and not tag_gone[flat[i]] then
        tag_cache[flat[i]] = parse_tag(flat[i + 1])
      end
    end
    tags_all = true
  end
  local weakest, rank = nil, nil
  for field, entry in pairs(tag_cache) do
    if weakest == nil or entry[3] < rank or (entry[3] == rank and field > weakest) then
      weakest, rank = field, entry[3]
    end
  end
  tag_cache[weakest] = nil
  tag_gone[weakest] = true
  tag_count = tag_count - 1
end

local function decayed_add(field, amount, t)
  if tag_count == nil then tag_count = redis.call('HLEN', tags) end
  local entry = tag_cache[field]
  if entry == nil then
    local stored = nil
    if not tags_all and not tag_gone[field] then stored = redis.call('HGET', tags, field) end
    if stored then
      entry = parse_tag(stored)
    else
      entry = {0, t, 0, true}
      tag_count = tag_count + 1
      tag_gone[field] = nil
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
  value = tonumber(string.format('%.10g', value))
  entry[1], entry[2], entry[3], entry[4] = value, at, tag_rank(value, at), true
  while tag_count > cfg.max_tags do drop_weakest_tag() end  -- more: folded before the cap
end

-- Distinct event names counted: a name past the cap counts as OTHER.
local names_known, names_count = {}, nil

local function counted_name(name)
  if name == OTHER then return OTHER end
  local known = names_known[name]
  if known == nil then
    known = redis.call('HEXISTS', counts, name) == 1
    if not known then
      if names_count == nil then
        names_count = redis.call('HLEN', counts) - redis.call('HEXISTS', counts, OTHER)
      end
      if names_count < cfg.max_event_names then
        known, names_count = true, names_count + 1
      end
    end
    names_known[name] = known
  end
  return known and name or OTHER
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
  local name = counted_name(ev.event)
  event_counts[name] = (event_counts[name] or 0) + 1
  if ev.traits then
    local traits = cjson.decode(redis.call('HGET', state, 'traits') or '{}')
    local n = 0
    for _ in pairs(traits) do n = n + 1 end
    for _, trait in ipairs(ev.traits) do
      local k, v = trait[1], trait[2]
      if traits[k] ~= nil then
        traits[k] = v
      elseif n < cfg.max_traits then
        traits[k], n = v, n + 1
      end
    end
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

-- Whether a messageId is new; the window then slides to this arrival.
local seen_size = nil
local function first_seen(ev)
  if cfg.dedupe_ids <= 0 then return true end
  if redis.call('ZADD', seen, 'NX', ev.arrival_ms, ev.message_id) == 0 then return false end
  seen_size = (seen_size or redis.call('ZCARD', seen) - 1) + 1
  if cfg.dedupe_window_ms > 0 then
    seen_size = seen_size - redis.call(
      'ZREMRANGEBYSCORE', seen, '-inf', '(' .. fmt(ev.arrival_ms - cfg.dedupe_window_ms))
  end
  if seen_size > cfg.dedupe_ids then
    redis.call('ZREMRANGEBYRANK', seen, 0, seen_size - cfg.dedupe_ids - 1)
    seen_size = cfg.dedupe_ids
  end
  return true
end

-- A user inactive for longer than ttl_ms of arrival time starts afresh, as if their keys
-- had expired (live, they have: see the end): the same state whatever the batches.
local function expire_user()
  redis.call('DEL', state, recent, strength, tags, counts, seen)
  S, event_counts, recent_size, strength_known = {}, {}, 0, {}
  tag_cache, tag_gone, tag_count, tags_all = {}, {}, nil, false
  names_known, names_count, seen_size = {}, nil, nil
end

for _, ev in ipairs(events) do
  local applied_field = 'offset:' .. ev.partition
  if ev.offset > (S[applied_field] or -1) then
    if cfg.ttl_ms > 0 and S.last_ms and ev.arrival_ms > S.last_ms + cfg.ttl_ms then
      expire_user()
    end
    S[applied_field] = ev.offset
    changed = true
    if first_seen(ev) then apply(ev) end
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
local tag_fields, gone_fields = {}, {}
for field, entry in pairs(tag_cache) do
  if entry[4] then
    tag_fields[#tag_fields + 1] = field
    tag_fields[#tag_fields + 1] = string.format('%.10g', entry[1]) .. ':' .. fmt(entry[2])
  end
end
for field in pairs(tag_gone) do gone_fields[#gone_fields + 1] = field end
for first = 1, #gone_fields, 1000 do  -- unpack() has a limit on how many values it takes
  redis.call('HDEL', tags, unpack(gone_fields, first, math.min(first + 999, #gone_fields)))
end
for first = 1, #tag_fields, 1000 do
  redis.call('HSET', tags, unpack(tag_fields, first, math.min(first + 999, #tag_fields)))
end

if changed and cfg.ttl_ms > 0 and S.last_ms and not cfg.direct then
  -- A function of event times only. A replay sets it once at its end (an expiry in the
  -- middle of a replay would drop state the live fold still had at that point).
  local deadline = fmt(S.last_ms + cfg.ttl_ms)
  for _, key in ipairs({state, recent, strength, tags, counts, seen}) do
    redis.call('PEXPIREAT', key, deadline)
  end
end

if cfg.direct then return direct_updates end
return redis.call('LRANGE', outbox, 0, -1)
