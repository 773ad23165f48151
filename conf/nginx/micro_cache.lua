-- The micro-cache (X-Cache-Status): this nginx node's copies of the app's answers and of the
-- Redis entries, as packed responses (packed_response.lua), in two tiers:
--   - the shared tier, lua_shared_dict micro, for all of the node's workers: a copy answers for
--     FRESH_S and is kept to KEEP_S, to be served stale while the app fails (STALE) or while one
--     request refreshes it (UPDATING); one request per key refreshes (lock), the others serve
--     the stale copy or wait for the refreshed one;
--   - the worker tier, each worker's own fresh copies, parsed (resty.lrucache), until the second
--     of the shared copy they came from ends: a hit there takes no lock and copies nothing.
-- Keys hold this node's write generation of the scope (lua_shared_dict micro_writes, bumped by
-- retire() before a write's answer leaves): a write through this node makes its older copies of
-- the task and of the list pages unreachable at once, in both tiers.
local lrucache = require "resty.lrucache"
local packed_response = require "packed_response"

local M = {}

local SHARED = ngx.shared.micro
-- This node's write generations: "epoch" and one counter per scope (a task id, "list").
local WRITES = ngx.shared.micro_writes
-- 200: the hot set. Random reads over 20,000 tasks (each copy read about once a second) ran at
-- 26k req/s without the worker tier and with 200, at 23k with 2,000, whose copies cost the
-- garbage collector more than they saved.
local WORKER_TIER = assert(lrucache.new(200))
local FRESH_S = 1     -- the micro-cache's second
local KEEP_S = 600    -- how long a copy lives, to be served stale after its second (STALE, UPDATING)
local LOCK_S = 5      -- a refresh that takes longer lets the waiting requests fetch for themselves
local WAIT_S = 0.002  -- how often a waiting request looks for the refreshed copy

-- The micro-cache key of `what` in `scope`: this node's write epoch and the scope's write
-- generation, then `what`. Read before anything is fetched, so that a copy fetched while a
-- write passed through is stored under a generation no later lookup uses.
function M.key(scope, what)
    return (WRITES:get("epoch") or 0) .. ":" .. (WRITES:get(scope) or 0) .. ":" .. what
end

-- Seconds the shared copy under `key` still answers for (0 or less: stale), and whether there
-- is one. A copy's age is read from its TTL (it lives KEEP_S from when it was stored), which
-- costs no copy out of shared memory: a stale copy is fetched only when it is served.
local function fresh_for(key)
    local ttl = SHARED:ttl(key)
    if not ttl then return 0, false end
    return ttl - (KEEP_S - FRESH_S), true
end

-- The fresh copy under `key`, parsed (from the worker tier, else from the shared tier, then
-- kept in the worker tier for the rest of its second), or nil; and whether the shared tier
-- holds a copy at all (a stale one, when none is fresh).
function M.fresh(key)
    local parsed = WORKER_TIER:get(key)
    if parsed then return parsed, true end
    local left, held = fresh_for(key)
    local copy = left > 0 and SHARED:get(key)
    if not copy then return nil, held end
    parsed = packed_response.parse(copy)
    WORKER_TIER:set(key, parsed, left)
    return parsed, true
end

-- The copy under `key`, fresh or stale (packed), or nil.
function M.stale(key)
    return SHARED:get(key)
end

-- Keeps a packed response under `key`, fresh for FRESH_S.
function M.store(key, packed)
    SHARED:set(key, packed, KEEP_S)
end

-- The name of the refresh lock of `key`, in the shared tier beside it.
local function lock_of(key)
    return "lock:" .. key
end

-- True if this request now refreshes `key` (then it must unlock it); false if another does.
function M.lock(key)
    return SHARED:add(lock_of(key), true, LOCK_S)
end

function M.unlock(key)
    SHARED:delete(lock_of(key))
end

-- Waits while another request refreshes `key`: its fresh copy (packed), or nil once the refresh
-- ended without one (or took longer than LOCK_S).
function M.wait(key)
    local lock = lock_of(key)
    local deadline = ngx.now() + LOCK_S
    repeat
        ngx.sleep(WAIT_S)
        local value = fresh_for(key) > 0 and SHARED:get(key)
        if value then return value end
    until not SHARED:get(lock) or ngx.now() >= deadline
    return nil
end

-- A new write generation for `scope`: its copies become unreachable. Generations are never
-- dropped but may be evicted when the dict is full (incr says so: forcible); then a new epoch
-- retires every key at once, lest a scope's generation start again from 0, under which older
-- copies may still be.
function M.retire(scope)
    local _, err, forcible = WRITES:incr(scope, 1, 0)
    if err or forcible then
        WRITES:incr("epoch", 1, 0)
        ngx.log(ngx.WARN, "micro_writes full or failing (", err or "evicted", "): new epoch")
    end
end

return M
