-- Cache generations: the Redis-side script (EVALSHA) that bumps them after a write
-- (svc/invalidation.py). It also documents the key names, which the app (svc/cache.py, which writes
-- entries) and the nginx edge (redis_cache.lua, which only reads them) both build:
--
--   tasks:<run_id>:gen:<scope>            a scope's generation (absent: 0)
--   tasks:<run_id>:<scope>:<what>         the one cached response: "<generation>\n<packed>",
--                                         <packed> as svc/represent.py packs it
--   <scope>  a task id (/api/tasks/<id>) or "list" (/api/tasks?...)
--   <what>   the request's cache variant (maps.conf $cache_variant) + its URI as received
--
-- A reader fetches both with one MGET and takes the entry only if it holds the current
-- generation. A filler stamps what it loaded with the generation read BEFORE loading: a write
-- racing with the load leaves an entry under a generation nobody accepts any more.
--
-- Every key lives under tasks:<run_id>, the run_id of the Redis process answering: a Redis that
-- restarted (empty, or from its append-only file with writes missing) or a replica promoted in
-- its place has another run_id, so nothing stored before can be read again. Callers pass it as
-- ARGV[1] (and name their reads after it): each learns it once per connection (INFO server, as
-- it connects) and uses the one of the connection the call goes out on. A TCP connection
-- reaches one process for its life, so the name is always the answering process's.
-- One generation per task (set to the task's version, which PostgreSQL owns and only ever
-- grows) and one for the collection (bumped by every write). A write to task A changes A's
-- generation and the list's; task B's entries stay.
--
-- ARGV[2] = "bump": ARGV[3] task id ("" for the list alone), ARGV[4] its version,
--           ARGV[5] seconds a task's generation lives (longer than any entry's TTL, so an
--           expired generation, read as 0, finds no entry stored under 0 before it).
-- Key names are built here, not passed as KEYS: this runs on a standalone Redis, not a cluster.
local ns = "tasks:" .. ARGV[1]

if ARGV[2] == "bump" then
    if ARGV[3] ~= "" then
        local gen = ns .. ":gen:" .. ARGV[3]
        -- Never backwards: a slower writer of an older version must not undo a newer one.
        if tonumber(ARGV[4]) > tonumber(redis.call("GET", gen) or "0") then
            redis.call("SET", gen, ARGV[4], "EX", ARGV[5])
        end
    end
    return redis.call("INCR", ns .. ":gen:list")
end
return redis.error_reply("generations.lua: unknown operation " .. tostring(ARGV[2]))
