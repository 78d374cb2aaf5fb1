-- wrk script: doLeaveMessage with a unique message on every request.
-- The token comes from the LEAVEMSG_TOKEN environment variable.
-- Globals, not locals: setup() hands each thread its id through a global of that thread.
token = os.getenv("LEAVEMSG_TOKEN")
counter = 0
thread_id = 0
local next_thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id * 7919)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json; charset=UTF-8"
  wrk.headers["Cookie"] = "ccmessaging-token=" .. token
  ok = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"phoneNo":"+1 555 0107","leaveMessage":"benchmark message %d-%d-%d"}',
    thread_id, counter, math.random(1000000000))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"resultCode":"0"', 1, true) then
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local acknowledged = 0
  for _, thread in ipairs(threads) do
    acknowledged = acknowledged + thread:get("ok")
  end
  io.write(string.format("ACK %d\n", acknowledged))
  io.write(string.format("P50 %.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("P99 %.3f\n", latency:percentile(99) / 1000))
end
