-- wrk script: every request carries a bearer token taken in turn from $TOKENS_FILE
-- (one per line); each wrk thread starts at a different offset. done() prints JSON.
local tokens = {}
local counter = 0

init = function(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
  counter = math.random(#tokens)
end

request = function()
  counter = counter + 1
  if counter > #tokens then counter = 1 end
  return wrk.format("GET", nil, {["Authorization"] = tokens[counter]})
end

done = function(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors_status": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
