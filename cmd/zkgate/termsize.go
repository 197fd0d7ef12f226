//go:build !windows

package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// termSize is the terminal's size, or 80x24 when out is not a terminal.
func termSize(out io.Writer) (w, h int) {
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			return int(ws.Col), int(ws.Row)
		}
	}
	return 80, 24
}
