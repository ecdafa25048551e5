-- Apply tenant-level updates produced by fold_user.lua: trending (popularity with a
-- short half-life), popularity (a long half-life, or none) and item co-occurrence.
-- Atomic, one Redis Cluster slot: every key shares the tenant's hash tag.
--
-- KEYS: 1 applied offsets (hash "user|partition id" -> offset), 2 trending (zset),
--       3 meta (hash), 4 popular (zset), 5.. co-occurrence zsets, one per item named in
--       ARGV[2].keys
-- ARGV[1]: config {trending_rate: trending decay rate per ms, popularity_rate: popularity
--          decay rate per ms (0: never decays), marks: keep the applied offsets (false for
--          a replay without outboxes), max_ranked: items kept in trending and in
--          popularity, max_cooccurring: items kept per co-occurrence set}
-- ARGV[2]: {updates: [{user, partition, offset, item_id, strength, time_ms, pairs}] sorted
--          by (partition, offset), keys: {item: index of its co-occurrence key},
--          co_prefix: the co-occurrence keys' prefix (same slot)}
--
-- Updates come from the users' outboxes, each user's in offset order; an update at or
-- below the offset already applied for its user and partition changes nothing, so a
-- call repeated after a crash is harmless. (The mark is per user, not per partition: an
-- outbox left by a crashed attempt may carry one user's updates ahead of other users'
-- earlier ones, which arrive in a later call.)
--
-- Decayed scores use forward decay: a score is stored relative to a landmark time
-- (weight s * exp(rate * (t - landmark))) and the set is rescaled when weights would
-- grow too large; every item then decays by the same factor, so the order is the order
-- of the decayed scores, and a sum does not depend on the order of its terms.
--
-- Bounds: past max_ranked, the lowest-scored items leave trending and popularity (an
-- item leaving popularity loses its co-occurrence set); past max_cooccurring, the least
-- frequent pairs leave a co-occurrence set. The applied offsets are deleted by the
-- caller once the outboxes they guard are gone. Unlike the per-user caps, these are
-- applied per call, on updates of all partitions: a tenant whose lists reach a cap may
-- keep a different tail after a replay than live (docs/operations.md, Memory bounds).

local applied, trending, meta, popular = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cfg = cjson.decode(ARGV[1])
local input = cjson.decode(ARGV[2])

local function num(text) return string.format('%.17g', text) end

local Decayed = {}
Decayed.__index = Decayed

local function decayed(key, rate, landmark_field)
  local landmark = tonumber(redis.call('HGET', meta, landmark_field) or 'nan')
  return setmetatable(
    {key = key, rate = rate, field = landmark_field, landmark = landmark, pending = {}},
    Decayed)
end

-- Increments are summed per item and written once per call (and before a rescale).
function Decayed:flush()
  for item, amount in pairs(self.pending) do
    redis.call('ZINCRBY', self.key, num(amount), item)
  end
  self.pending = {}
end

function Decayed:add(item, amount, t)
  local x = 0
  if self.rate ~= 0 then
    if self.landmark ~= self.landmark then  -- NaN: the first update sets the landmark
      self.landmark = t
      redis.call('HSET', meta, self.field, string.format('%d', t))
    end
    x = self.rate * (t - self.landmark)
    if x > 40 then
      self:flush()
      redis.call('ZUNIONSTORE', self.key, 1, self.key, 'WEIGHTS', num(math.exp(-x)))
      self.landmark = t
      redis.call('HSET', meta, self.field, string.format('%d', t))
      x = 0
    end
  end
  self.pending[item] = (self.pending[item] or 0) + amount * math.exp(x)
end

local hot = decayed(trending, cfg.trending_rate, 'trending_landmark_ms')
local lasting = decayed(popular, cfg.popularity_rate, 'popular_landmark_ms')

local done = {}  -- "user|partition" -> last offset applied, for the users in this call
do
  local fields = {}
  for _, u in ipairs(input.updates) do
    local field = u.user .. '|' .. u.partition
    if done[field] == nil then
      done[field] = false
      fields[#fields + 1] = field
    end
  end
  for first = 1, #fields, 1000 do  -- unpack() has a limit on how many values it takes
    local chunk = {unpack(fields, first, math.min(first + 999, #fields))}
    local stored = redis.call('HMGET', applied, unpack(chunk))
    for i, field in ipairs(chunk) do done[field] = tonumber(stored[i] or '-1') end
  end
end

local changed = {}
local count = 0
local pairs_seen = {}  -- co-occurrence key index -> other item -> count, written once

local function pair(key_index, other)
  local row = pairs_seen[key_index]
  if row == nil then
    row = {}
    pairs_seen[key_index] = row
  end
  row[other] = (row[other] or 0) + 1
end

for _, u in ipairs(input.updates) do
  local field = u.user .. '|' .. u.partition
  if u.offset > done[field] then
    done[field] = u.offset
    changed[field] = true
    hot:add(u.item_id, u.strength, u.time_ms)
    lasting:add(u.item_id, u.strength, u.time_ms)
    if type(u.pairs) == 'table' then
      for _, other in ipairs(u.pairs) do
        pair(input.keys[u.item_id], other)
        pair(input.keys[other], u.item_id)
      end
    end
    count = count + 1
  end
end

hot:flush()
lasting:flush()
for key_index, row in pairs(pairs_seen) do
  for other, n in pairs(row) do redis.call('ZINCRBY', KEYS[key_index], n, other) end
end
for field in pairs(changed) do
  if cfg.marks then redis.call('HSET', applied, field, string.format('%d', done[field])) end
end

local function over(key, cap)
  local extra = redis.call('ZCARD', key) - cap
  return extra > 0 and extra or 0
end
local extra = over(trending, cfg.max_ranked)
if extra > 0 then redis.call('ZREMRANGEBYRANK', trending, 0, extra - 1) end
for key_index in pairs(pairs_seen) do
  extra = over(KEYS[key_index], cfg.max_cooccurring)
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[key_index], 0, extra - 1) end
end
extra = over(popular, cfg.max_ranked)
if extra > 0 then
  local gone = redis.call('ZRANGE', popular, 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', popular, 0, extra - 1)
  for _, item in ipairs(gone) do redis.call('DEL', input.co_prefix .. item) end
end
if redis.call('ZCARD', popular) >= cfg.max_ranked then
  -- A pair written now for an item dropped before would recreate its set: drop it too.
  for item, key_index in pairs(input.keys) do
    if pairs_seen[key_index] and not redis.call('ZSCORE', popular, item) then
      redis.call('DEL', KEYS[key_index])
    end
  end
end
return count
