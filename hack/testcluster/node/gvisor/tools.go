//go:build tools

// Package tools records the commands build-node.sh builds, so `go mod tidy` keeps their
// dependencies in go.sum.
package tools

import (
	_ "gvisor.dev/gvisor/runsc"
	_ "gvisor.dev/gvisor/shim"
)
