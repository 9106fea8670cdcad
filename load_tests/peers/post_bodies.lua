-- wrk script: POST a rotating set of prebuilt JSON bodies and print a JSON summary.
-- Usage: wrk ... -s post_bodies.lua URL -- BODIES_FILE   (one JSON body per line)
local requests = {}
local counter = 0

function init(args)
  local path = args[1]
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", wrk.path, headers, line)
    end
  end
  if #requests == 0 then
    error("no bodies in " .. tostring(path))
  end
end

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end

function done(summary, latency, requests_stats)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
