// The pause process of every pod sandbox on the test cluster's real node (standard library only).
module github.com/agentkube/agentkube/hack/testcluster/node/pause

go 1.26.0
