// Package jute is ZooKeeper's wire codec: frames, records, opcodes, error codes and
// four-letter-word detection.
//
// It owns encoding and decoding only; it knows nothing of sockets beyond reading frames
// from an io.Reader, nor of routing or breakers. Every record implements Record:
//
//	var req jute.GetDataRequest
//	if err := jute.Decode(body, &req); err != nil { ... }
//	out, _ := jute.Encode(nil, &req) // the same bytes back
//
// Decoders never allocate from an unchecked length and never panic: a length or count is
// compared with the bytes left before anything is allocated. The relay's hot path uses
// ParseRequestHeader / ParseReplyHeader, which allocate nothing.
//
// spec.md, beside this file, describes the wire format in our words.
package jute
