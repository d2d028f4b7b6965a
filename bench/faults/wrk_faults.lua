-- wrk script for bench/faults: POST realistic tickets round-robin (as bench/wrk_post.lua does),
-- count every status, answers marked "degraded": true, and answers per second, and optionally
-- stop each thread after a number of answers.
--
--   wrk -t2 -c16 -d3600s --latency -s bench/faults/wrk_faults.lua URL -- BODIES [PER_THREAD]
--
-- BODIES: one JSON request body per line. PER_THREAD: answers after which each wrk thread stops
-- (0 or absent: run for -d; each stopping thread prints WRK_THREAD_DONE). done() prints one line, prefixed WRK_FAULTS_JSON, for run.py.
-- per_second maps a Unix second to {answers, failures} (failure = status outside 2xx), so a
-- fault's effect can be placed in time.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local bodies = {}
local index = 1
local limit = 0
local stopped = false
local headers = { ["Content-Type"] = "application/json" }
responses, non2xx, status5xx, degraded = 0, 0, 0, 0
-- Only numbers and strings cross from a wrk thread to done() (thread:get): wrk 4.1's copy of
-- nested tables corrupts the Lua stack ("invalid key to 'next'"). So statuses are counted in
-- globals named s_<code>, listed in the string status_codes, and finished seconds are appended
-- to the string history as "second:answers:failures;", the current one kept in cur_*.
status_codes = ""
history = ""
cur_sec, cur_n, cur_f = 0, 0, 0

-- the folder this script is in, so the shared loader is found from any working directory
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local read_bodies = dofile(here .. "../wrk_bodies.lua")

function init(args)
   bodies = read_bodies(args[1], "wrk_faults.lua")
   limit = tonumber(args[2] or "0") or 0
   index = ((id or 0) * math.floor(#bodies / 2)) % #bodies + 1
end

function request()
   local body = bodies[index]
   index = index % #bodies + 1
   return wrk.format("POST", nil, headers, body)
end

function response(status, resp_headers, body)
   responses = responses + 1
   local key = "s_" .. status
   local count = _G[key]
   if count == nil then
      count = 0
      status_codes = status_codes .. status .. ","
   end
   _G[key] = count + 1
   local now = os.time()
   if now ~= cur_sec then
      if cur_sec ~= 0 then
         history = history .. cur_sec .. ":" .. cur_n .. ":" .. cur_f .. ";"
      end
      cur_sec, cur_n, cur_f = now, 0, 0
   end
   cur_n = cur_n + 1
   if body ~= nil and string.find(body, '"degraded"%s*:%s*true') then
      degraded = degraded + 1
   end
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      cur_f = cur_f + 1
      if status >= 500 then
         status5xx = status5xx + 1
      end
   end
   if limit > 0 and responses >= limit and not stopped then
      -- wrk's main thread sleeps for the whole -d: run.py sends SIGINT once every thread
      -- has said this, and wrk then reports as usual.
      stopped = true
      io.write("WRK_THREAD_DONE\n")
      io.flush()
      wrk.thread:stop()
   end
end

local function add_second(per_second, sec, n, f)
   local b = per_second[sec] or { 0, 0 }
   per_second[sec] = { b[1] + n, b[2] + f }
end

local function json_map(map, as_pair)
   local parts = {}
   for k, v in pairs(map) do
      if as_pair then
         table.insert(parts, string.format('"%s": [%d, %d]', k, v[1], v[2]))
      else
         table.insert(parts, string.format('"%s": %d', k, v))
      end
   end
   return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
   local total = { responses = 0, non2xx = 0, status5xx = 0, degraded = 0 }
   local by_status, per_second = {}, {}
   for _, thread in ipairs(threads) do
      for _, name in ipairs({ "responses", "non2xx", "status5xx", "degraded" }) do
         total[name] = total[name] + (thread:get(name) or 0)
      end
      for code in string.gmatch(thread:get("status_codes") or "", "(%d+),") do
         by_status[code] = (by_status[code] or 0) + (thread:get("s_" .. code) or 0)
      end
      for sec, n, f in string.gmatch(thread:get("history") or "", "(%d+):(%d+):(%d+);") do
         add_second(per_second, sec, tonumber(n), tonumber(f))
      end
      local sec = thread:get("cur_sec") or 0
      if sec ~= 0 then
         add_second(per_second, string.format("%d", sec), thread:get("cur_n"), thread:get("cur_f"))
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_FAULTS_JSON {"requests": %d, "duration_us": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"responses": %d, "non2xx": %d, "status5xx": %d, "degraded": %d, ' ..
      '"by_status": %s, "per_second": %s, ' ..
      '"latency_us": {"p50": %d, "p99": %d, "max": %d}}\n',
      summary.requests, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      total.responses, total.non2xx, total.status5xx, total.degraded,
      json_map(by_status, false), json_map(per_second, true),
      latency:percentile(50), latency:percentile(99), latency.max))
end
