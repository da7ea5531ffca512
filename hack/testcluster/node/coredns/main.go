// CoreDNS for the test cluster's real node, built with only the plugins its Corefile uses
// (the full build links every cloud provider's DNS SDK); no `forward`: the test machines have
// no upstream resolver to forward to. The directive order is CoreDNS's own,
// filtered, so plugins run in the order upstream defines.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

var used = map[string]bool{
	"cache": true, "errors": true, "health": true, "kubernetes": true, "loadbalance": true,
	"log": true, "ready": true,
}

func init() {
	kept := make([]string, 0, len(used))
	for _, name := range dnsserver.Directives {
		if used[name] {
			kept = append(kept, name)
		}
	}
	dnsserver.Directives = kept
}

func main() {
	coremain.Run()
}
