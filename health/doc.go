// Package health knows each ZooKeeper member's state through four-letter words.
//
// It owns the 4lw client (one short connection per command, deadlines, bounded replies),
// parsers for srvr/stat, mntr, conf, ruok and isro as today's servers (3.5–3.9) print them,
// a per-member status with rise/fall counting (a pure function, Next), and an ensemble
// View (leader, quorum, zxids) that a Monitor keeps current with one poller per member.
// It works when only srvr is whitelisted, the server default since 3.5.3.
//
// It knows nothing of client sessions: the proxy reads Views, and the breaker subscribes
// to them.
package health
