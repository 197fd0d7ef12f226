//go:build !linux

// The reliability suite reads /proc, signals ZooKeeper processes and counts descriptors:
// it runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "reliability: the suite runs on Linux only")
	os.Exit(2)
}
