//go:build tools

// Package tools pins the main-branch OCI distribution-spec conformance runner (August 2026,
// with `?tag=` and the OCI_API_* / OCI_DATA_* switches). The suite is
// a Go test package; setup.sh builds it with
// `go test -c github.com/opencontainers/distribution-spec/conformance`.
package tools

import _ "github.com/opencontainers/distribution-spec/conformance"
