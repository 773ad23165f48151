-- The read path of GET/HEAD /api/tasks[/{id}] (nginx.conf, front server): two cache layers in
-- one content handler, then the app.
--
-- 1. Micro-cache: this nginx node's memory (lua_shared_dict micro). Any response the app gave
--    with status 200 or 404, as sent (status, headers, body), answers for FRESH_S; kept KEEP_S
--    longer to be served stale while the app fails (STALE) or while one request refreshes it
--    (UPDATING). One request per key refreshes; the others serve the stale copy or wait for it.
--    X-Cache-Status says which: HIT, MISS, EXPIRED, STALE, UPDATING or BYPASS.
-- 2. Edge cache: Redis, shared by every node. Key built by generations.lua, the script the app's
--    cache runs too (one EVALSHA a lookup): under the generation of the task the URI names, or
--    of the list for /api/tasks?... Value "<status>\n<content-type>\n<etag>\n<body>", 200s
--    only, SET with EX $edge_ttl. The generation is read BEFORE fetching from the app, so a
--    write racing with the fetch can only leave an entry under the old generation, which
--    nobody reads any more. X-Edge-Cache says HIT, MISS or BYPASS.
-- 3. The app, by a subrequest to /_app.
-- Redis errors/timeouts never fail the request: we fall through to the app (X-Edge-Cache: MISS).
-- Writes and other methods go to @app untouched. Both layers' outcomes are counted here
-- (metrics.lua), so no request pays for a log-phase handler.
local limits = require "limits"
local lrucache = require "resty.lrucache"
local metrics = require "metrics"

local M = {}

-- Loaded once, in nginx's master (init_by_lua): the script's text and its SHA-1 for EVALSHA.
local SCRIPT = assert(io.open(assert(package.searchpath("generations", package.path)))):read("*a")
local SHA = ngx.sha1_bin(SCRIPT):gsub(".", function(c) return string.format("%02x", c:byte()) end)

local MICRO = ngx.shared.micro
-- Each worker's own fresh copies, parsed, until the second of the shared copy they came from
-- ends: a hit then takes no lock and copies nothing. 200: the hot set. Random reads over 20,000
-- tasks (each copy read about once a second) ran at 26k req/s without it and with 200, at 23k
-- with 2,000, whose copies cost the garbage collector more than they saved.
local PARSED = assert(lrucache.new(200))
local FRESH_MS = 1000 -- the micro-cache's second
local KEEP_S = 600    -- how long a copy may be served stale (STALE, UPDATING)
local LOCK_S = 5      -- a refresh that takes longer lets the waiting requests fetch for themselves
local WAIT_S = 0.002  -- how often a waiting request looks for the refreshed copy

local TIMEOUT_MS = 100
-- After a Redis error this worker leaves Redis alone for a second: no timeout paid per request,
-- and time for the app's janitors to bump the generations that writes meanwhile could not.
local RETRY_AFTER_S = 1
local skip_until = 0
local DROP = { -- never copied from the app response: hop-by-hop, recomputed, or per request
    ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
    ["content-length"] = true, ["x-request-id"] = true,
}

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
        local data, err = sock:receive(len + 2) -- payload + CRLF
        if not data then return nil, err end
        return data:sub(1, len)
    elseif kind == "*" then -- the script's {key, entry}
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
    return nil, "redis: " .. line -- "-ERR ...", "-NOSCRIPT ..." or a type we never ask for
end

-- Sends one command and returns its reply (see read_reply).
local function call(sock, ...)
    local n = select("#", ...)
    local req = { "*", n, "\r\n" }
    for i = 1, n do
        local arg = tostring((select(i, ...)))
        req[#req + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
    end
    local ok, err = sock:send(req)
    if not ok then return nil, err end
    return read_reply(sock)
end

-- The run_id of the Redis process this worker's pooled connections reach (generations.lua names
-- every key after it). Connections are pooled under it: one checked, as it connected, to reach
-- another process (Redis restarted, or a new one behind the same name) serves its request and
-- closes, so a pooled connection's process is always the one its pool is named after.
local run_id = ""

-- Returns a connection, the run_id of the process it reaches, and whether it may be pooled;
-- or nil while backing off or when Redis fails.
local function connect()
    if ngx.now() < skip_until then return nil end
    local sock = ngx.socket.tcp()
    sock:settimeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
    local host, port, pool_run = ngx.var.redis_host, ngx.var.redis_port, run_id
    local ok, err = sock:connect(host, tonumber(port), { pool = host .. ":" .. port .. ":" .. pool_run })
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

-- Edge cache (Redis) ---------------------------------------------------------------

-- The generation scope of a URI: the task it names, or the list.
local function scope(uri)
    return uri:match("^/api/tasks/(%d+)$") or uri:match("^/api/tasks/(%d+)%?") or "list"
end

-- Returns the key for this request (nil if Redis is unusable) and the entry (nil on miss).
local function lookup(uri)
    local sock, run, pooled = connect()
    if not sock then return nil end
    local args = { run, "read", "edge", scope(uri), uri }
    local reply, err = call(sock, "EVALSHA", SHA, 0, unpack(args))
    if reply == nil and err and err:find("NOSCRIPT", 1, true) then -- Redis restarted: load it
        reply = call(sock, "EVAL", SCRIPT, 0, unpack(args))
    end
    release(sock, reply ~= nil, pooled)
    if type(reply) ~= "table" then return nil end
    return reply[1], reply[2] ~= ngx.null and reply[2] or nil
end

local function store(key, value)
    local sock, _, pooled = connect()
    if not sock then return end
    release(sock, call(sock, "SET", key, value, "EX", ngx.var.edge_ttl) ~= nil, pooled)
end

-- Responses ------------------------------------------------------------------------

-- A response as one string, as the micro-cache keeps it: "<status>\n<name>: <value>\n...\n\n<body>".
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

-- Sends a parsed response with this request's X-Cache-Status; 304 if If-None-Match matches.
local function send_parsed(response, micro_status)
    local names, values = response.names, response.values
    for i = 1, #names do ngx.header[names[i]] = values[i] end
    ngx.header["X-Cache-Status"] = micro_status
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
local function send(packed, micro_status)
    send_parsed(parse(packed), micro_status)
end

-- Micro-cache ----------------------------------------------------------------------

-- The clock the micro-cache's copies are stamped with (ms, in the dict's 32-bit flags).
local function now_ms()
    return math.floor(ngx.now() * 1000) % 4294967296
end

-- Milliseconds a copy stamped `stamp` still answers for (0 or less: none).
local function fresh_for(stamp)
    return FRESH_MS - (now_ms() - stamp) % 4294967296
end

local function fresh(stamp)
    return fresh_for(stamp) > 0
end

-- Waits while another request refreshes `key`: its fresh copy, or nil once the refresh ended
-- without one (or took longer than LOCK_S).
local function wait_for(key, lock)
    local deadline = ngx.now() + LOCK_S
    repeat
        ngx.sleep(WAIT_S)
        local value, stamp = MICRO:get(key)
        if value and fresh(stamp) then return value end
    until not MICRO:get(lock) or ngx.now() >= deadline
    return nil
end

-- The response from Redis or the app: { packed = the response (see pack), keep = whether the
-- micro-cache may keep it, edge_key and edge_value = what to store in Redis once it is sent },
-- or { status = nginx's own 502/504 } if the app gave no answer at all.
local function fetch(uri, bypass)
    local edge_key, entry
    if not bypass then edge_key, entry = lookup(uri) end
    if entry then
        local status, ctype, etag, body = entry:match("^(%d+)\n([^\n]*)\n([^\n]*)\n(.*)$")
        if status then
            metrics.count("edge", "HIT")
            local headers = { ["Content-Type"] = ctype ~= "" and ctype or nil,
                              ["ETag"] = etag ~= "" and etag or nil, ["X-Edge-Cache"] = "HIT" }
            return { packed = pack(status, headers, body), status = tonumber(status), keep = true }
        end
    end

    -- Miss: fetch from the app (always GET, so even a HEAD leaves a complete entry), if this
    -- client's budget has room (limits.lua; else its 429, or a stale copy if there is one).
    local refused = limits.refuse()
    if refused then return { status = refused } end
    local res = ngx.location.capture("/_app", { method = ngx.HTTP_GET })
    if res.status >= 500 and res.body == "" then -- nginx-made error: the app gave no answer
        return { status = res.status }
    end
    local edge = bypass and "BYPASS" or "MISS"
    metrics.count("edge", edge)
    local headers, ctype, etag, cookie = { ["X-Edge-Cache"] = edge }, nil, nil, false
    for name, value in pairs(res.header) do
        local lname = name:lower()
        if type(value) == "table" then value = table.concat(value, ", ") end
        if not DROP[lname] then headers[name] = value end
        if lname == "content-type" then ctype = value end
        if lname == "etag" then etag = value end
        if lname == "set-cookie" then cookie = true end
    end
    local result = { packed = pack(res.status, headers, res.body), status = res.status,
                     keep = (res.status == 200 or res.status == 404) and not res.truncated
                            and not cookie }
    if edge_key and result.keep and res.status == 200 and ctype and etag then
        result.edge_key = edge_key
        result.edge_value = table.concat({ res.status, ctype, etag, res.body }, "\n")
    end
    return result
end

function M.serve()
    local method = ngx.req.get_method()
    if method ~= "GET" and method ~= "HEAD" then return ngx.exec("@app") end
    local key = ngx.var.cache_variant .. ngx.var.request_uri -- "count/api/tasks?..." (maps.conf)

    if ngx.var.cache_bypass == "1" then -- Cache-Control: no-cache: neither layer, nothing stored
        metrics.count("micro", "BYPASS")
        local answer = fetch(key, true)
        if not answer.packed then return ngx.exit(answer.status) end
        return send(answer.packed, "BYPASS")
    end

    local parsed = PARSED:get(key)
    if parsed then
        metrics.count("micro", "HIT")
        return send_parsed(parsed, "HIT")
    end
    local copy, stamp = MICRO:get_stale(key)
    if copy and fresh(stamp) then
        metrics.count("micro", "HIT")
        parsed = parse(copy)
        PARSED:set(key, parsed, fresh_for(stamp) / 1000)
        return send_parsed(parsed, "HIT")
    end
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

    -- Entries keep no X-Total-Count (only status, type, ETag, body): counted pages skip Redis.
    local answer = fetch(key, ngx.var.cache_variant ~= "")
    if copy and (not answer.packed or answer.status >= 500) then -- the app fails: its last
        if locked then MICRO:delete(lock) end                        -- answer, stale, instead
        metrics.count("micro", "STALE")
        return send(copy, "STALE")
    end
    if answer.keep and locked then MICRO:set(key, answer.packed, KEEP_S, now_ms()) end
    if locked then MICRO:delete(lock) end
    local outcome = copy and "EXPIRED" or "MISS"
    metrics.count("micro", outcome)
    if not answer.packed then return ngx.exit(answer.status) end -- problem.conf renders it
    send(answer.packed, outcome)
    if answer.edge_key then store(answer.edge_key, answer.edge_value) end -- after it went out
end

return M
