-- The read path of GET/HEAD /api/tasks[/{id}] (nginx.conf, front server): two cache layers in
-- one content handler, then the app; and the write path's hook that keeps this node's
-- micro-cache behind no write that passed through it.
--
-- Every layer answers with the same representation, the packed response of svc/represent.py
-- (packed_response.lua), which the app writes to Redis and nginx only reads. Layer headers are
-- added by whoever answers: X-Cache-Status (micro-cache), X-Edge-Cache (Redis), X-App-Cache
-- (the app, passed on from its answer).
--
-- 1. Micro-cache (micro_cache.lua): this node's copies, first this worker's own, parsed (the
--    worker tier), then the node's (the shared tier); any response the app gave with status 200
--    or 404, or Redis held, answers for a second, and is served stale while the app fails or
--    while one request refreshes it.
--    X-Cache-Status says which: HIT, MISS, EXPIRED, STALE, UPDATING or BYPASS.
-- 2. Redis (redis_cache.lua, over redis_client.lua): the app's entry for this request, taken
--    only if stored under its scope's current generation. X-Edge-Cache says HIT, MISS or BYPASS.
-- 3. The app, by a subrequest to /_app: its read-through fills the Redis entry.
-- Redis errors/timeouts never fail the request: we fall through to the app (X-Edge-Cache: MISS).
-- Writes and other methods go to @app untouched; written() retires this node's copies of what
-- they changed. Both layers' outcomes are counted here (metrics.lua), so no request pays for a
-- log-phase handler.
local limits = require "limits"
local metrics = require "metrics"
local micro = require "micro_cache"
local packed_response = require "packed_response"
local redis_cache = require "redis_cache"

local M = {}

-- Writes whose answer means the task or the list may differ from this node's copies.
local WRITE_METHODS = { POST = true, PUT = true, PATCH = true, DELETE = true }

-- The generation scope of a path: the task it names, or the list. Like the app's, or else a
-- key the app never writes (a miss), never another scope's entry: the scope is in the key.
local function scope_of(uri)
    return uri:match("^/api/tasks/(%d+)$") or "list"
end

-- The header filter of writes (nginx.conf, @app): once the app has answered a write that may
-- have changed the task or the list (2xx), or found it changed (404, 412), this node's copies
-- of both are retired before the answer leaves, so the next read through this node shows it.
function M.written()
    local status = ngx.status
    if not WRITE_METHODS[ngx.req.get_method()]
            or not (status < 300 or status == 404 or status == 412) then
        return
    end
    local scope = scope_of(ngx.var.uri)
    if scope ~= "list" then micro.retire(scope) end
    micro.retire("list")
end

-- The app's answer, by a subrequest (edge: what X-Edge-Cache says of this answer, MISS or
-- BYPASS): { packed = the packed response, status, keep = whether the micro-cache may keep
-- it, edge, app = the layer headers of this answer }, or { status = nginx's own 502/504 } if
-- the app gave no answer at all.
local function from_app(edge)
    -- Only if this client's budget has room (limits.lua; else its 429, or a stale copy if there
    -- is one). Always GET, so even a HEAD leaves a complete copy.
    local refused = limits.refuse()
    if refused then return { status = refused } end
    local res = ngx.location.capture("/_app", { method = ngx.HTTP_GET })
    if res.status == 502 and res.body == "" then
        -- nginx's own 502: once more. A worker killed mid-request leaves several kept-alive
        -- connections that fail one by one, more than nginx's own retry may meet; a GET is safe
        -- to repeat.
        res = ngx.location.capture("/_app", { method = ngx.HTTP_GET })
    end
    if res.status >= 500 and res.body == "" then -- nginx-made error: the app gave no answer
        return { status = res.status }
    end
    metrics.count("edge", edge)
    local packed, cookie = packed_response.pack(res)
    return { packed = packed, status = res.status,
             keep = (res.status == 200 or res.status == 404) and not res.truncated and not cookie,
             edge = edge, app = res.header["X-App-Cache"] }
end

function M.serve()
    local method = ngx.req.get_method()
    if method ~= "GET" and method ~= "HEAD" then return ngx.exec("@app") end
    local var = ngx.var
    local scope = scope_of(var.uri)
    -- "count/api/tasks?...": the request's variant (maps.conf) and its URI, as the app keys it
    local what = var.cache_variant .. var.request_uri

    if var.cache_bypass == "1" then -- Cache-Control: no-cache: neither layer, nothing stored
        metrics.count("micro", "BYPASS")
        local answer = from_app("BYPASS")
        if not answer.packed then return ngx.exit(answer.status) end
        return packed_response.send_packed(answer.packed, "BYPASS", answer.edge, answer.app)
    end

    local key = micro.key(scope, what)
    local fresh, held = micro.fresh(key)
    if fresh then
        metrics.count("micro", "HIT")
        return packed_response.send(fresh, "HIT")
    end
    -- Redis before the lock: reading the app's entry costs the app nothing, so every request
    -- may, and a hit takes no lock.
    local entry = redis_cache.lookup(scope, what)
    if entry then
        metrics.count("edge", "HIT")
        micro.store(key, entry)
        local outcome = held and "EXPIRED" or "MISS"
        metrics.count("micro", outcome)
        return packed_response.send_packed(entry, outcome, "HIT")
    end

    -- stale: served only while the app fails or another request refreshes it
    local copy = held and micro.stale(key)
    local locked = micro.lock(key)
    if not locked then -- another request refreshes this key
        if copy then
            metrics.count("micro", "UPDATING")
            return packed_response.send_packed(copy, "UPDATING")
        end
        local refreshed = micro.wait(key)
        if refreshed then
            metrics.count("micro", "HIT")
            return packed_response.send_packed(refreshed, "HIT")
        end
    end

    local answer = from_app("MISS")
    if copy and (not answer.packed or answer.status >= 500) then -- the app fails: its last
        if locked then micro.unlock(key) end                         -- answer, stale, instead
        metrics.count("micro", "STALE")
        return packed_response.send_packed(copy, "STALE")
    end
    if answer.keep and locked then micro.store(key, answer.packed) end
    if locked then micro.unlock(key) end
    local outcome = copy and "EXPIRED" or "MISS"
    metrics.count("micro", outcome)
    if not answer.packed then return ngx.exit(answer.status) end -- problem.conf renders it
    packed_response.send_packed(answer.packed, outcome, answer.edge, answer.app)
end

return M
