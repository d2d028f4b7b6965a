-- wrk script: POST realistic tickets to /classify, round-robin, and count non-2xx answers.
--
--   wrk -t2 -c16 -d15s --latency -s bench/wrk_post.lua http://127.0.0.1:PORT/classify -- BODIES
--
-- BODIES is a file with one JSON request body per line (bench/run.py writes it from
-- data/test.jsonl). Each wrk thread walks the list from its own offset, so two threads do not
-- send the same ticket at the same moment and the mix of lengths stays realistic.
--
-- Why count statuses here: wrk's own summary only prints "Non-2xx or 3xx responses" and counts
-- status > 399 in errors.status; a 3xx or 1xx would slip through. done() prints one line,
-- prefixed WRK_JSON, that bench/run.py parses, so no one has to scrape wrk's text output.
--
-- It also counts 200 answers marked "degraded": true (the service answering from its TF-IDF
-- fallback while its circuit breaker is open): those are fast, but not the transformer's work,
-- so a run with any of them does not measure the model path.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua interpreter).
local bodies = {}
local index = 1
local headers = { ["Content-Type"] = "application/json" }
responses, non2xx, status4xx, status5xx, other, degraded = 0, 0, 0, 0, 0, 0

-- the folder this script is in, so the shared loader is found from any working directory
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local read_bodies = dofile(here .. "wrk_bodies.lua")

function init(args)
   bodies = read_bodies(args[1], "wrk_post.lua")
   -- Spread the threads' starting points over the list (id is set by setup before init).
   index = ((id or 0) * math.floor(#bodies / 2)) % #bodies + 1
end

function request()
   local body = bodies[index]
   index = index % #bodies + 1
   return wrk.format("POST", nil, headers, body)
end

function response(status, resp_headers, body)
   responses = responses + 1
   if body ~= nil and string.find(body, '"degraded"%s*:%s*true') then
      degraded = degraded + 1
   end
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if status >= 500 then
         status5xx = status5xx + 1
      elseif status >= 400 then
         status4xx = status4xx + 1
      else
         other = other + 1
      end
   end
end

function done(summary, latency, requests)
   local counts = { responses = 0, non2xx = 0, status4xx = 0, status5xx = 0, other = 0,
                    degraded = 0 }
   for _, thread in ipairs(threads) do
      for name, _ in pairs(counts) do
         counts[name] = counts[name] + (thread:get(name) or 0)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"responses": %d, "non2xx": %d, "status4xx": %d, "status5xx": %d, "status_other": %d, ' ..
      '"degraded": %d, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
      '"p50": %d, "p75": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      counts.responses, counts.non2xx, counts.status4xx, counts.status5xx, counts.other,
      counts.degraded,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(95), latency:percentile(99), latency:percentile(99.9)))
end
