-- wrk script of benchmarks/rag_bench.py: every request a POST of the JSON body given as the
-- first script argument, with the headers "name: value" given as the rest.
--   wrk -c16 -d10s -s benchmarks/rag_post.lua URL -- '{"model": ...}' 'x-agentkube-rag: off'
function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["content-type"] = "application/json"
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end
