//go:build !linux

package proxy

// zkgate's relay is an epoll event loop (loop_linux.go): it builds for Linux only.
var _ = zkgate_relay_requires_linux_epoll
