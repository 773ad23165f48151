-- The edge's figures for Prometheus (nginx.conf): cache outcomes counted per request in a
-- shared dict, served with nginx's stub_status figures on the internal metrics listener.
--
-- count(layer, outcome): called by edge_cache.lua as it answers a read of /api/tasks[/{id}]:
--                 "micro" with its X-Cache-Status, "edge" with its X-Edge-Cache.
-- serve():       GET /metrics on METRICS_LISTEN, in Prometheus text format.
local M = {}

local COUNTS = ngx.shared.edge_metrics
-- Outcomes shown from the start, at 0; any other that occurs is shown once it has.
local KNOWN = {
    micro = { "BYPASS", "EXPIRED", "HIT", "MISS", "STALE", "UPDATING" },
    edge = { "BYPASS", "HIT", "MISS" },
}
local FAMILIES = {
    { layer = "micro", name = "nginx_micro_cache_requests_total",
      help = "Reads of /api/tasks[/{id}] by micro-cache outcome (X-Cache-Status)." },
    { layer = "edge", name = "nginx_edge_cache_requests_total",
      help = "Reads that reached the app's entries in Redis, by outcome (X-Edge-Cache)." },
}
-- stub_status's figures, in the order its page lists them.
local STUB = {
    { "nginx_connections_active", "gauge", "Client connections open now." },
    { "nginx_connections_accepted_total", "counter", "Client connections accepted." },
    { "nginx_connections_handled_total", "counter", "Client connections handled." },
    { "nginx_http_requests_total", "counter", "Client requests, metrics scrapes included." },
    { "nginx_connections_reading", "gauge", "Connections where nginx reads the request." },
    { "nginx_connections_writing", "gauge", "Connections where nginx writes the response." },
    { "nginx_connections_waiting", "gauge", "Idle keepalive connections." },
}

function M.count(layer, outcome)
    COUNTS:incr(layer .. ":" .. outcome, 1, 0)
end

local function header(out, name, kind, help)
    out[#out + 1] = "# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " " .. kind .. "\n"
end

-- One counter family: the known outcomes, then any other seen (upper-case words only).
local function outcomes(out, family)
    local seen, names = {}, {}
    for _, outcome in ipairs(KNOWN[family.layer]) do
        seen[outcome] = true
        names[#names + 1] = outcome
    end
    for _, key in ipairs(COUNTS:get_keys(0)) do
        local layer, outcome = key:match("^(%a+):([A-Z_]+)$")
        if layer == family.layer and not seen[outcome] then
            seen[outcome] = true
            names[#names + 1] = outcome
        end
    end
    header(out, family.name, "counter", family.help)
    for _, outcome in ipairs(names) do
        out[#out + 1] = string.format('%s{cache_status="%s"} %d\n', family.name, outcome,
                                      COUNTS:get(family.layer .. ":" .. outcome) or 0)
    end
end

function M.serve()
    local out = {}
    for _, family in ipairs(FAMILIES) do outcomes(out, family) end
    local page = ngx.location.capture("/_stub_status").body
    local figures = { page:match("Active connections: (%d+).-(%d+) (%d+) (%d+)"
                                 .. "%s+Reading: (%d+) Writing: (%d+) Waiting: (%d+)") }
    for i, metric in ipairs(STUB) do
        if figures[i] then
            header(out, metric[1], metric[2], metric[3])
            out[#out + 1] = metric[1] .. " " .. figures[i] .. "\n"
        end
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(out)
end

return M
