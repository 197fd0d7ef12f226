package jute

import "encoding/binary"

// FourLetterWords are the commands a ZooKeeper server answers when they replace the
// first frame length of a connection.
var FourLetterWords = []string{
	"conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr",
	"srst", "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash",
}

var fourLetterSet = func() map[uint32]string {
	m := make(map[uint32]string, len(FourLetterWords))
	for _, w := range FourLetterWords {
		m[binary.BigEndian.Uint32([]byte(w))] = w
	}
	return m
}()

// StmkArgLen is the length of stmk's argument: an 8-byte trace mask after the word.
const StmkArgLen = 8

// FourLetterWord tells a four-letter command from a frame length, given a connection's
// first 4 bytes. Every command reads as an int32 far above any legal frame length, so
// the two never collide. ok is false for anything else.
func FourLetterWord(first4 []byte) (cmd string, ok bool) {
	if len(first4) < 4 {
		return "", false
	}
	cmd, ok = fourLetterSet[binary.BigEndian.Uint32(first4)]
	return cmd, ok
}
