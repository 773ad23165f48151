-- The Redis cache layer of the edge (X-Edge-Cache): the app's entry for a request, read with
-- its scope's generation (key names: generations.lua), and taken only if it was stored under
-- that generation. nginx only reads these entries; the app's read-through writes them. Redis
-- errors and timeouts are a miss: the request goes on to the app.
--
-- The lookups a worker starts in one round of its event loop go out as one MGET (two keys
-- each): one round trip, one send and one read for them all, on both sides of the socket.
local redis = require "redis_client"
local semaphore = require "ngx.semaphore"

local M = {}

local MAX_BATCH = 32  -- lookups in one MGET, at most
-- A lookup that joined another's MGET waits this long for it at most (then: a miss). The
-- MGET's own socket timeouts (redis_client.lua) end it well before, unless Redis trickles.
local JOIN_WAIT_S = 1

-- The batch this worker is gathering for its next MGET, or nil: { n, scopes, whats, results,
-- sema (once a second lookup joined) }; results[i] is the i-th lookup's answer once the MGET
-- was read (nil: a miss).
local gathering = nil

-- The packed response of an entry read with its scope's generation, if stored under it.
local function checked(gen, stamped)
    if stamped == ngx.null then return nil end
    if gen == ngx.null then gen = "0" end
    local newline = stamped:find("\n", 1, true)
    if not newline or stamped:sub(1, newline - 1) ~= gen
            or not stamped:find("\n\n", newline, true) then -- not a packed response: a miss
        return nil
    end
    return stamped:sub(newline + 1)
end

-- One MGET of every lookup in `batch`, its answers into batch.results, then wakes the others.
local function fetch(batch)
    local sock, run, pooled = redis.connect()
    if sock then
        local ns = "tasks:" .. run .. ":"
        local scopes, whats, keys = batch.scopes, batch.whats, {}
        for i = 1, batch.n do
            keys[2 * i - 1] = ns .. "gen:" .. scopes[i]
            keys[2 * i] = ns .. scopes[i] .. ":" .. whats[i]
        end
        local values = redis.mget(sock, keys)
        redis.release(sock, values ~= nil, pooled)
        if values then
            for i = 1, batch.n do batch.results[i] = checked(values[2 * i - 1], values[2 * i]) end
        end
    end
    if batch.sema then batch.sema:post(batch.n - 1) end
end

-- The packed response (packed_response.lua) Redis holds for `what` in `scope`, if stored under
-- the scope's current generation; nil on a miss or when Redis is unusable. The first lookup of
-- a round yields once (ngx.sleep(0): the round's other requests run up to their lookups and
-- join it), then sends the MGET for all.
function M.lookup(scope, what)
    local batch = gathering
    if batch and batch.n < MAX_BATCH then
        local i = batch.n + 1
        batch.n, batch.scopes[i], batch.whats[i] = i, scope, what
        batch.sema = batch.sema or semaphore.new()
        batch.sema:wait(JOIN_WAIT_S)
        return batch.results[i]
    end
    batch = { n = 1, scopes = { scope }, whats = { what }, results = {} }
    gathering = batch
    ngx.sleep(0)
    if gathering == batch then gathering = nil end
    fetch(batch)
    return batch.results[1]
end

return M
