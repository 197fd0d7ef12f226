//go:build race

package proxy_test

// raceEnabled: the race detector's shadow memory is part of RSS and is not given back.
const raceEnabled = true
