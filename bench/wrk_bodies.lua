-- Shared by bench/wrk_post.lua and bench/faults/wrk_faults.lua: the request bodies, one JSON
-- body per line of the file passed after "--". Loaded with dofile from the script's folder.
return function(path, script)
   if path == nil then
      error(script .. ": pass the bodies file after --, e.g. -- bench/results/logs/bodies.jsonl")
   end
   local file = assert(io.open(path, "r"), script .. ": cannot open " .. path)
   local bodies = {}
   for line in file:lines() do
      if #line > 0 then
         table.insert(bodies, line)
      end
   end
   file:close()
   if #bodies == 0 then
      error(script .. ": no bodies in " .. path)
   end
   return bodies
end
