package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

var (
	// ErrNotWhitelisted: the member refused the command (4lw.commands.whitelist).
	ErrNotWhitelisted = errors.New("not in the 4lw whitelist")
	// ErrNotServing: the member answers but has no quorum.
	ErrNotServing = errors.New("not currently serving requests")
	// ErrEmptyReply: the member closed the connection without a word.
	ErrEmptyReply = errors.New("empty reply")
)

// MaxReply bounds a four-letter-word reply; `cons` or `dump` on a big member can be long,
// and a health check must never buffer without limit.
const MaxReply = 4 << 20

// Ask sends one four-letter word to addr and returns the reply. The whole exchange is
// bounded by timeout (and ctx). Refusals come back as ErrNotWhitelisted, ErrNotServing
// or ErrEmptyReply, wrapped with the address and command.
func Ask(ctx context.Context, addr, cmd string, timeout time.Duration) (string, error) {
	return AskWith(ctx, nil, addr, cmd, timeout)
}

// Dialer connects to a member: plain TCP, or TLS for a secureClientPort.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// AskWith is Ask over connections from dial (nil: plain TCP).
func AskWith(ctx context.Context, dial Dialer, addr, cmd string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	c, err := dial(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", cmd, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", fmt.Errorf("%s %s: %w", cmd, addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, MaxReply))
	if err != nil && len(b) == 0 {
		// A reset after a complete reply is normal (the server closes at once); a reset
		// with nothing read is a failure.
		return "", fmt.Errorf("%s %s: %w", cmd, addr, err)
	}
	return classify(addr, cmd, string(b))
}

func classify(addr, cmd, out string) (string, error) {
	switch {
	case out == "":
		return "", fmt.Errorf("%s %s: %w", cmd, addr, ErrEmptyReply)
	case strings.Contains(out, "is not executed because it is not in the whitelist"):
		return "", fmt.Errorf("%s %s: %w", cmd, addr, ErrNotWhitelisted)
	case strings.Contains(out, "not currently serving requests"):
		return "", fmt.Errorf("%s %s: %w", cmd, addr, ErrNotServing)
	}
	return out, nil
}
