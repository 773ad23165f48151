-- The read path of GET/HEAD /api/tasks[/{id}] (nginx.conf, front server): two cache layers in
-- one content handler, then the app; and the write path's hook that keeps this node's
-- micro-cache behind no write that passed through it.
--
-- Every layer answers with the same representation: the packed response of
-- svc/represent.py, "<status>\n<Name>: <value>\n...\n\n<body>" (status, representation
-- headers, body), which the app writes to Redis and this file only reads. Layer headers are
-- added by whoever answers: X-Cache-Status (micro-cache), X-Edge-Cache (Redis), X-App-Cache
-- (the app, passed on from its answer).
--
-- 1. Micro-cache: this nginx node's memory (lua_shared_dict micro). Any response the app gave
--    with status 200 or 404, or Redis held, answers for FRESH_S; kept to KEEP_S, to be
--    served stale while the app fails (STALE) or while one request refreshes it (UPDATING).
--    One request per key refreshes; the others serve the stale copy or wait for it.
--    X-Cache-Status says which: HIT, MISS, EXPIRED, STALE, UPDATING or BYPASS. Each worker
--    also keeps its fresh copies parsed (PARSED), until the shared copy's second ends.
--    Keys hold this node's write generation of the scope (micro_writes, bumped by written()
--    before a write's answer leaves): a write through this node makes its older copies of the
--    task and of the list pages unreachable at once, in both tiers.
-- 2. Redis: the app's entry for this request (key names: generations.lua), read with one MGET
--    with the scope's generation; taken only if it was stored under that generation.
--    X-Edge-Cache says HIT, MISS or BYPASS.
-- 3. The app, by a subrequest to /_app: its read-through fills the Redis entry.
-- Redis errors/timeouts never fail the request: we fall through to the app (X-Edge-Cache: MISS).
-- Writes and other methods go to @app untouched. Both layers' outcomes are counted here
-- (metrics.lua), so no request pays for a log-phase handler.
local limits = require "limits"
local lrucache = require "resty.lrucache"
local metrics = require "metrics"

local M = {}

local MICRO = ngx.shared.micro
-- This node's write generations: "epoch" and one counter per scope (a task id, "list").
local WRITES = ngx.shared.micro_writes
-- Each worker's own fresh copies, parsed, until the second of the shared copy they came from
-- ends: a hit then takes no lock and copies nothing. 200: the hot set. Random reads over 20,000
-- tasks (each copy read about once a second) ran at 26k req/s without it and with 200, at 23k
-- with 2,000, whose copies cost the garbage collector more than they saved.
local PARSED = assert(lrucache.new(200))
local FRESH_S = 1     -- the micro-cache's second
local KEEP_S = 600    -- how long a copy lives, to be served stale after its second (STALE, UPDATING)
local LOCK_S = 5      -- a refresh that takes longer lets the waiting requests fetch for themselves
local WAIT_S = 0.002  -- how often a waiting request looks for the refreshed copy

local TIMEOUT_MS = 100
-- After a Redis error this worker leaves Redis alone for a second: no timeout paid per request,
-- and time for the app's janitors to bump the generations that writes meanwhile could not.
local RETRY_AFTER_S = 1
local skip_until = 0
-- Never copied from the app's answer into a copy: hop-by-hop and framing headers, per-request
-- and layer headers (the representation is the rest, as svc/represent.py stores it).
local DROP = {
    ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
    ["content-length"] = true, ["x-request-id"] = true, ["x-app-cache"] = true,
    ["x-edge-cache"] = true, ["x-cache-status"] = true,
}
-- Writes whose answer means the task or the list may differ from this node's copies.
local WRITE_METHODS = { POST = true, PUT = true, PATCH = true, DELETE = true }

-- Minimal RESP client ----------------------------------------------------------

-- Reads one reply: a bulk/simple/integer reply as a string, ngx.null for a nil bulk reply,
-- an array (one level) as a table, or nil, err (an "-ERR ..." reply too).
local function read_reply(sock)
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind == "$" then
        local len = tonumber(rest)
        if len < 0 then return ngx.null end
        local data, err = sock:receive(len)
        if not data or not sock:receive(2) then return nil, err or "redis: no CRLF" end -- CRLF
        return data
    elseif kind == "*" then
        local items = {}
        for i = 1, tonumber(rest) do
            local item, err = read_reply(sock)
            if item == nil then return nil, err end
            items[i] = item
        end
        return items
    elseif kind == "+" or kind == ":" then
        return rest
    end
    return nil, "redis: " .. line -- "-ERR ..." or a type we never ask for
end

-- MGET's reply, read in as few socket calls as it arrived in (one, for an item): the helpers
-- below carry (buf, pos), what has arrived and where parsing stands.
local READ_MAX = 65536

-- buf from pos on, and what arrives next; nil once the socket fails.
local function more(sock, buf, pos)
    local data = sock:receiveany(READ_MAX)
    return data and buf:sub(pos) .. data
end

-- The CRLF-ended line at pos: line, buf, the position after it; nil once the socket fails.
local function line_at(sock, buf, pos)
    while true do
        local crlf = buf:find("\r\n", pos, true)
        if crlf then return buf:sub(pos, crlf - 1), buf, crlf + 2 end
        buf, pos = more(sock, buf, pos), 1
        if not buf then return nil end
    end
end

-- The bulk reply at pos: its value (ngx.null for a missing key), buf, the position after it.
local function bulk_at(sock, buf, pos)
    local head
    head, buf, pos = line_at(sock, buf, pos)
    local len = head and head:byte(1) == 36 and tonumber(head:sub(2)) -- "$<length>"
    if not len then return nil end
    if len < 0 then return ngx.null, buf, pos end
    while #buf - pos < len + 1 do -- the value and its CRLF
        buf, pos = more(sock, buf, pos), 1
        if not buf then return nil end
    end
    return buf:sub(pos, pos + len - 1), buf, pos + len + 2
end

-- The two values of an MGET of two keys, or nil (a failed socket, an error reply).
local function read_pair(sock)
    local head, buf, pos = line_at(sock, "", 1)
    if head ~= "*2" then return nil end
    local first
    first, buf, pos = bulk_at(sock, buf, pos)
    if first == nil then return nil end
    local second = bulk_at(sock, buf, pos)
    if second == nil then return nil end
    return first, second
end

-- The run_id of the Redis process this worker's pooled connections reach (generations.lua names
-- every key after it). Connections are pooled under it: one checked, as it connected, to reach
-- another process (Redis restarted, or a new one behind the same name) serves its request and
-- closes, so a pooled connection's process is always the one its pool is named after.
local run_id = ""
local host, port, pool_name -- this worker's Redis address (nginx.conf) and pool, learned once

-- Returns a connection, the run_id of the process it reaches, and whether it may be pooled;
-- or nil while backing off or when Redis fails.
local function connect()
    if ngx.now() < skip_until then return nil end
    local sock = ngx.socket.tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    if not host then host, port = ngx.var.redis_host, tonumber(ngx.var.redis_port) end
    local pool_run = run_id
    if not pool_name or pool_name.run ~= pool_run then
        pool_name = { run = pool_run, options = { pool = host .. ":" .. port .. ":" .. pool_run } }
    end
    local ok, err = sock:connect(host, port, pool_name.options)
    if not ok then
        skip_until = ngx.now() + RETRY_AFTER_S
        return nil, err
    end
    if sock:getreusedtimes() > 0 then return sock, pool_run, true end
    -- A new connection logs in (nginx.conf: env REDIS_PASSWORD;) and learns its process's run_id.
    local password = os.getenv("REDIS_PASSWORD") or ""
    local info
    if password ~= "" then
        sock:send({ "*2\r\n$4\r\nAUTH\r\n$", #password, "\r\n", password, "\r\n" })
        if sock:receive("*l") ~= "+OK" then
            sock:close()
            skip_until = ngx.now() + RETRY_AFTER_S
            return nil, "redis: AUTH failed"
        end
    end
    sock:send("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
    info, err = read_reply(sock)
    local id = type(info) == "string" and info:match("\nrun_id:(%x+)")
    if not id then
        sock:close()
        skip_until = ngx.now() + RETRY_AFTER_S
        return nil, err or "redis: no run_id"
    end
    run_id = id
    return sock, id, id == pool_run
end

-- Pool a healthy connection (if its pool is its process's); a failed one may hold a half-read
-- reply, so close it and back off.
local function release(sock, healthy, pooled)
    if healthy and pooled then
        sock:setkeepalive(30000, 32)
        return
    end
    sock:close()
    if not healthy then skip_until = ngx.now() + RETRY_AFTER_S end
end

-- Redis: the app's entries -------------------------------------------------------

-- The generation scope of a path: the task it names, or the list. Like the app's, or else a
-- key the app never writes (a miss), never another scope's entry: the scope is in the key.
local function scope_of(uri)
    return uri:match("^/api/tasks/(%d+)$") or "list"
end

-- The packed response Redis holds for `what` in `scope`, if stored under the scope's current
-- generation (generations.lua); nil on a miss or when Redis is unusable.
local function lookup(scope, what)
    local sock, run, pooled = connect()
    if not sock then return nil end
    local ns = "tasks:" .. run .. ":"
    local gen_key, key = ns .. "gen:" .. scope, ns .. scope .. ":" .. what
    local gen, stamped
    if sock:send({ "*3\r\n$4\r\nMGET\r\n$", #gen_key, "\r\n", gen_key,
                   "\r\n$", #key, "\r\n", key, "\r\n" }) then
        gen, stamped = read_pair(sock)
    end
    release(sock, gen ~= nil, pooled)
    if not stamped or stamped == ngx.null then return nil end
    if gen == ngx.null then gen = "0" end
    local newline = stamped:find("\n", 1, true)
    if not newline or stamped:sub(1, newline - 1) ~= gen
            or not stamped:find("\n\n", newline, true) then -- not a packed response: a miss
        return nil
    end
    return stamped:sub(newline + 1)
end

-- Responses ------------------------------------------------------------------------

-- A response as one string, as svc/represent.py packs it: "<status>\n<Name>: <value>\n...\n\n<body>".
local function pack(status, headers, body)
    local out = { status }
    for name, value in pairs(headers) do out[#out + 1] = name .. ": " .. value end
    return table.concat(out, "\n") .. "\n\n" .. body
end

-- True if If-None-Match names this ETag (weak comparison, as nginx's own check) or is "*".
local function not_modified(etag)
    local wanted = ngx.var.http_if_none_match
    if not wanted or not etag then return false end
    if wanted == "*" then return true end
    etag = etag:gsub("^W/", "")
    for tag in wanted:gmatch("[^,%s]+") do
        if tag:gsub("^W/", "") == etag then return true end
    end
    return false
end

-- A packed response as { status, names, values, body }.
local function parse(packed)
    local split = packed:find("\n\n", 1, true)
    local head = packed:sub(1, split - 1)
    local names, values = {}, {}
    for name, value in head:gmatch("\n([^:\n]+): ([^\n]*)") do
        names[#names + 1], values[#values + 1] = name, value
    end
    return { status = tonumber(head:match("^%d+")), names = names, values = values,
             body = packed:sub(split + 2) }
end

-- Sends a parsed response with the layer headers of this answer (nil: not sent); 304 if
-- If-None-Match matches.
local function send_parsed(response, micro, edge, app)
    local names, values = response.names, response.values
    for i = 1, #names do ngx.header[names[i]] = values[i] end
    ngx.header["X-Cache-Status"] = micro
    if edge then ngx.header["X-Edge-Cache"] = edge end
    if app then ngx.header["X-App-Cache"] = app end
    if response.status == 200 and not_modified(ngx.header["ETag"]) then
        ngx.status = 304
        ngx.header["Content-Type"] = nil
        ngx.send_headers()
    else
        ngx.status = response.status
        ngx.header["Content-Length"] = #response.body
        if ngx.req.get_method() ~= "HEAD" then ngx.print(response.body) end
    end
    ngx.eof()
end

-- Sends a packed response (see send_parsed).
local function send(packed, micro, edge, app)
    send_parsed(parse(packed), micro, edge, app)
end

-- Micro-cache ----------------------------------------------------------------------

-- Seconds the copy under `key` still answers for (0 or less: stale), and whether there is one.
-- A copy's age is read from its TTL (it lives KEEP_S from when it was stored), which costs no
-- copy out of shared memory: a stale copy is fetched only when it is served.
local function fresh_for(key)
    local ttl = MICRO:ttl(key)
    if not ttl then return 0, false end
    return ttl - (KEEP_S - FRESH_S), true
end

-- Waits while another request refreshes `key`: its fresh copy, or nil once the refresh ended
-- without one (or took longer than LOCK_S).
local function wait_for(key, lock)
    local deadline = ngx.now() + LOCK_S
    repeat
        ngx.sleep(WAIT_S)
        local value = fresh_for(key) > 0 and MICRO:get(key)
        if value then return value end
    until not MICRO:get(lock) or ngx.now() >= deadline
    return nil
end

-- The micro-cache key of `what` in `scope`: this node's write epoch and the scope's write
-- generation, then `what`. Read before anything is fetched, so that a copy fetched while a
-- write passed through is stored under a generation no later lookup uses.
local function micro_key(scope, what)
    return (WRITES:get("epoch") or 0) .. ":" .. (WRITES:get(scope) or 0) .. ":" .. what
end

-- A new write generation for `scope`. Generations are never dropped but may be evicted when
-- the dict is full (incr says so: forcible); then a new epoch retires every key at once, lest
-- a scope's generation start again from 0, under which older copies may still be.
local function bump(scope)
    local _, err, forcible = WRITES:incr(scope, 1, 0)
    if err or forcible then
        WRITES:incr("epoch", 1, 0)
        ngx.log(ngx.WARN, "micro_writes full or failing (", err or "evicted", "): new epoch")
    end
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
    if scope ~= "list" then bump(scope) end
    bump("list")
end

-- The app's answer, by a subrequest (edge: what X-Edge-Cache says of this answer, MISS or
-- BYPASS): { packed = the response (see pack), status, keep = whether the micro-cache may keep
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
    local headers, cookie = {}, false
    for name, value in pairs(res.header) do
        local lname = name:lower()
        if type(value) == "table" then value = table.concat(value, ", ") end
        if not DROP[lname] then headers[name] = value end
        if lname == "set-cookie" then cookie = true end
    end
    return { packed = pack(res.status, headers, res.body), status = res.status,
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
        return send(answer.packed, "BYPASS", answer.edge, answer.app)
    end

    local key = micro_key(scope, what)
    local parsed = PARSED:get(key)
    if parsed then
        metrics.count("micro", "HIT")
        return send_parsed(parsed, "HIT")
    end
    local left, held = fresh_for(key)
    local copy = left > 0 and MICRO:get(key)
    if copy then
        metrics.count("micro", "HIT")
        parsed = parse(copy)
        PARSED:set(key, parsed, left)
        return send_parsed(parsed, "HIT")
    end
    -- Redis before the lock: reading the app's entry costs the app nothing, so every request
    -- may, and a hit takes no lock.
    local entry = lookup(scope, what)
    if entry then
        metrics.count("edge", "HIT")
        MICRO:set(key, entry, KEEP_S)
        local outcome = held and "EXPIRED" or "MISS"
        metrics.count("micro", outcome)
        return send(entry, outcome, "HIT")
    end

    copy = held and MICRO:get(key) -- stale: served only while the app fails or another refreshes
    local lock = "lock:" .. key
    local locked = MICRO:add(lock, true, LOCK_S)
    if not locked then -- another request refreshes this key
        if copy then
            metrics.count("micro", "UPDATING")
            return send(copy, "UPDATING")
        end
        local refreshed = wait_for(key, lock)
        if refreshed then
            metrics.count("micro", "HIT")
            return send(refreshed, "HIT")
        end
    end

    local answer = from_app("MISS")
    if copy and (not answer.packed or answer.status >= 500) then -- the app fails: its last
        if locked then MICRO:delete(lock) end                        -- answer, stale, instead
        metrics.count("micro", "STALE")
        return send(copy, "STALE")
    end
    if answer.keep and locked then MICRO:set(key, answer.packed, KEEP_S) end
    if locked then MICRO:delete(lock) end
    local outcome = copy and "EXPIRED" or "MISS"
    metrics.count("micro", outcome)
    if not answer.packed then return ngx.exit(answer.status) end -- problem.conf renders it
    send(answer.packed, outcome, answer.edge, answer.app)
end

return M
