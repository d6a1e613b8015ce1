-- wrk script of benches/gateway_load.sh: every request is a GET carrying
-- `Authorization: Bearer <token>`, the tokens read from a file (one per
-- line) and used in turn, so that requests spread evenly over all of them.
--
--   wrk -t T -c C -d Ds -s tokens.lua URL -- TOKENS_FILE T [ORIGINAL_URI]
--
-- With ORIGINAL_URI the request is what nginx's `auth_request` sends to
-- forward auth: `X-Original-Method: GET` and `X-Original-URI: ORIGINAL_URI`
-- besides the token. The nginx variants get the very same requests, so the
-- client does the same work on both sides of a comparison.
--
-- Thread i of T starts at token 1 + i*N/T and takes the next one for each
-- request (its connections share the counter). Every request is formatted
-- once, in init, so picking a token costs wrk one table lookup.
--
-- done() prints one line, `GWRESULT {json}`, with the counts, the error
-- counts (`status` is wrk's "Non-2xx or 3xx responses") and the latency
-- percentiles in microseconds, p95 included (wrk's own --latency table has
-- 50/75/90/99 only). Nothing prints a token.

local thread_number = 0

function setup(thread)
    thread:set("thread_index", thread_number)
    thread_number = thread_number + 1
end

local requests = {}
local count = 0
local index = 1

function init(args)
    local path, threads, original_uri = args[1], tonumber(args[2]) or 1, args[3]
    local file = assert(io.open(path, "r"))
    for line in file:lines() do
        if #line > 0 then
            local headers = { ["Authorization"] = "Bearer " .. line }
            if original_uri then
                headers["X-Original-Method"] = "GET"
                headers["X-Original-URI"] = original_uri
            end
            count = count + 1
            requests[count] = wrk.format("GET", nil, headers)
        end
    end
    file:close()
    assert(count > 0, "no token in the tokens file")
    index = 1 + math.floor((thread_index or 0) * count / threads) % count
end

function request()
    local r = requests[index]
    index = index + 1
    if index > count then
        index = 1
    end
    return r
end

function done(summary, latency, _)
    local e = summary.errors
    io.write(string.format(
        'GWRESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
            .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
            .. '"mean_us":%.1f,"p50_us":%d,"p75_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency:percentile(50), latency:percentile(75),
        latency:percentile(90), latency:percentile(95), latency:percentile(99),
        latency.max))
end
