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
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI and returns the process exit code: 0 ok, 1 failure (or a degraded
// ensemble for check), 2 bad arguments or config.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, "zkgate:", err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// usageError marks bad arguments or config: exit code 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// exitError carries an exit code for an outcome already reported (check's verdict).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
