-- wrk script: every request carries a credential taken in turn from $TOKENS_FILE (one per
-- line): a bearer token by default, or $TOKEN_HEADER: $TOKEN_PREFIX<line> (the cookie
-- scenarios send Cookie: <name>=<sealed value>); each wrk thread starts at a different
-- offset. done() prints JSON.
local tokens = {}
local counter = 0
local header = os.getenv("TOKEN_HEADER") or "Authorization"
local prefix = os.getenv("TOKEN_PREFIX") or "Bearer "

init = function(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    tokens[#tokens + 1] = prefix .. line
  end
  counter = math.random(#tokens)
end

request = function()
  counter = counter + 1
  if counter > #tokens then counter = 1 end
  return wrk.format("GET", nil, {[header] = tokens[counter]})
end

done = function(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors_status": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
