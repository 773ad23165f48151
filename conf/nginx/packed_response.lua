-- The one cached form of a response, in the app's Redis entry and in the micro-cache alike, as
-- svc/represent.py packs it: "<status>\n<Name>: <value>\n...\n\n<body>" (status, the
-- representation headers, body). Here it is packed from the app's answer to the edge's
-- subrequest, parsed, and sent, as a 304 when If-None-Match matches. Layer headers
-- (X-Cache-Status, X-Edge-Cache, X-App-Cache) are added by whoever answers, never packed.
local M = {}

-- Never copied from the app's answer into a packed response: hop-by-hop and framing headers,
-- per-request and layer headers (the representation is the rest, as svc/represent.py stores it).
local DROP = {
    ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
    ["content-length"] = true, ["x-request-id"] = true, ["x-app-cache"] = true,
    ["x-edge-cache"] = true, ["x-cache-status"] = true,
}

-- The answer of an ngx.location.capture as one packed string, and whether it sets a cookie
-- (then no cache may keep it).
function M.pack(res)
    local out, cookie = { res.status }, false
    for name, value in pairs(res.header) do
        local lname = name:lower()
        if type(value) == "table" then value = table.concat(value, ", ") end
        if not DROP[lname] then out[#out + 1] = name .. ": " .. value end
        if lname == "set-cookie" then cookie = true end
    end
    return table.concat(out, "\n") .. "\n\n" .. res.body, cookie
end

-- A packed response as { status, names, values, etag, body }. Plain finds, not gmatch, which
-- LuaJIT does not compile.
function M.parse(packed)
    local split = packed:find("\n\n", 1, true)
    local eol = packed:find("\n", 1, true)
    local response = { status = tonumber(packed:sub(1, eol - 1)), body = packed:sub(split + 2) }
    local names, values, n = {}, {}, 0
    while eol < split do
        local start = eol + 1
        local colon = packed:find(": ", start, true)
        eol = packed:find("\n", start, true)
        if colon and colon < eol then
            local name, value = packed:sub(start, colon - 1), packed:sub(colon + 2, eol - 1)
            n = n + 1
            names[n], values[n] = name, value
            if #name == 4 and name:lower() == "etag" then response.etag = value end
        end
    end
    response.names, response.values = names, values
    return response
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

-- Sends a parsed response with the layer headers of this answer (nil: not sent); 304 if
-- If-None-Match matches.
function M.send(response, micro, edge, app)
    local names, values = response.names, response.values
    for i = 1, #names do ngx.header[names[i]] = values[i] end
    ngx.header["X-Cache-Status"] = micro
    if edge then ngx.header["X-Edge-Cache"] = edge end
    if app then ngx.header["X-App-Cache"] = app end
    if response.status == 200 and not_modified(response.etag) then
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

-- Sends a packed response (see send).
function M.send_packed(packed, micro, edge, app)
    M.send(M.parse(packed), micro, edge, app)
end

return M
