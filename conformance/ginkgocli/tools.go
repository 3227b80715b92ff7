//go:build tools

// Package ginkgocli pins the ginkgo CLI's module (see go.mod).
package ginkgocli

import _ "github.com/onsi/ginkgo/v2/ginkgo"
