//go:build tools

// Package tools records the command build-node.sh builds, so `go mod tidy` keeps its
// dependencies in go.sum.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
