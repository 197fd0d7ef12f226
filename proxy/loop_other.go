//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// epollBuilt: without epoll, every session runs on the goroutine driver.
const epollBuilt = false

// highWater: past this much queued for one side, the other side is not read until it
// drains (see goroutines.go).
const highWater = 256 << 10

type loop struct{}

type loopSession struct{}

func newLoop(*Server) (*loop, error) { return nil, errors.New("no epoll on this OS") }

func (l *loop) stop() {}

func (s *Server) adoptLoop(c *conn, server net.Conn, early []byte, _, _ *tlsPlan) {
	s.adoptGoroutines(c, server, early)
}

// lobby: without epoll, each connection's handshake goroutine starts at accept.
type lobby struct{}

func newLobby(*Server) (*lobby, error) { return nil, nil }
func (lb *lobby) admit(*conn) bool     { return false }
func (lb *lobby) release(*conn)        {}
func (lb *lobby) stop()                {}

// discardUnread: without the lobby, the handshake's reader took what the client sent.
func discardUnread(net.Conn) {}
