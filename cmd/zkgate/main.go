// Command zkgate is a ZooKeeper-wire-compatible proxy with circuit breaking.
//
// It owns the command line, config loading, wiring and signals; protocol details live in
// the packages it wires together.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "zkgate:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks bad arguments or config: exit code 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }
