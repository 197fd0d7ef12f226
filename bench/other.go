//go:build !linux

// The benchmark harness reads /proc and drives HAProxy: it runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the benchmark harness runs on Linux only")
	os.Exit(2)
}
