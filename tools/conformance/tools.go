//go:build tools

// Package tools pins the OCI distribution-spec conformance suite. The suite is
// a Go test package; setup.sh builds it with
// `go test -c github.com/opencontainers/distribution-spec/conformance`.
package tools

import _ "github.com/opencontainers/distribution-spec/conformance"
