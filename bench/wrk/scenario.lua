-- One benchmark scenario for wrk. Arguments after `--`:
--   scenario api_key products hot_id idempotency_key
-- Prints one line "BENCH {json}" with throughput, latency percentiles and status counts.

local scenario, products, hot, fixed, hold
local held = {}  -- per thread: ids of holds made and not yet confirmed
statuses = {}  -- global: done() reads it from each thread
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function purchase_body(ids)
  local items = {}
  for i, id in ipairs(ids) do
    items[i] = '{"product_id":"' .. id .. '","quantity":1}'
  end
  return '{"items":[' .. table.concat(items, ",") .. '],"reference":"bench"}'
end

local function product(n)
  return "p" .. n
end

function init(args)
  scenario = args[1]
  products = tonumber(args[3])
  hot = args[4]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  wrk.headers["X-API-KEY"] = args[2]
  wrk.headers["Content-Type"] = "application/json"
  if scenario == "get-hot" then
    fixed = wrk.format("GET", "/inventory/" .. hot)
  elseif scenario == "purchase-hot" then
    fixed = wrk.format("POST", "/inventory/purchase", nil, purchase_body({hot}))
  elseif scenario == "reserve-confirm-hot" then
    hold = wrk.format("POST", "/reservations", nil, purchase_body({hot}))
  elseif scenario == "purchase-replay" then
    wrk.headers["Idempotency-Key"] = args[5]
    fixed = wrk.format("POST", "/inventory/purchase", nil, purchase_body({product(1)}))
  end
end

function request()
  if fixed then
    return fixed
  end
  if hold then
    local id = table.remove(held)
    if id then
      return wrk.format("POST", "/reservations/" .. id .. "/confirm")
    end
    return hold
  end
  local n = math.random(products)
  if scenario == "get-spread" then
    return wrk.format("GET", "/inventory/" .. product(n))
  elseif scenario == "put-spread" then
    local body = '{"quantity":' .. math.random(100000, 1000000) .. '}'
    return wrk.format("PUT", "/inventory/" .. product(n), nil, body)
  elseif scenario == "purchase-spread" then
    local b, c = n, n
    while b == n do b = math.random(products) end
    while c == n or c == b do c = math.random(products) end
    return wrk.format("POST", "/inventory/purchase", nil,
      purchase_body({product(n), product(b), product(c)}))
  end
  error("unknown scenario " .. tostring(scenario))
end

local backing_off = 0  -- connections told to come back later (Retry-After) and not yet paused

function response(status, headers, body)
  -- A request the service shed (503 overloaded) is counted apart from other 503s, and its
  -- connection honours Retry-After, as a well-behaved client does: wrk asks delay() for the
  -- next request of the connection whose response just arrived.
  if status == 503 and body and string.find(body, "/problems/overloaded", 1, true) then
    status = "shed"
    backing_off = backing_off + 1
  end
  if hold and status == 201 and body then
    local id = string.match(body, '"id": ?"([^"]+)", ?"status": ?"active"')
    if id then
      table.insert(held, id)
    end
  end
  statuses[status] = (statuses[status] or 0) + 1
end

function delay()
  if backing_off > 0 then
    backing_off = backing_off - 1
    return 1000
  end
  return 0
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    table.insert(parts, '"' .. status .. '":' .. count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"statuses":{%s},"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout))
end
