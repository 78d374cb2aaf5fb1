-- wrk script: the cheapest endpoint, for the machine's HTTP ceiling.
function done(summary, latency, requests)
  io.write(string.format("P50 %.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("P99 %.3f\n", latency:percentile(99) / 1000))
end
