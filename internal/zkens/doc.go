// Package zkens runs a real Apache ZooKeeper ensemble on loopback: the member processes
// (one JVM each, QuorumPeerMain), their config and data directories, and their logs. It
// knows nothing of zkgate, and nothing of the testing package, so that zkgate's demo can
// use it without linking testing into the binary. Tests use it through internal/zktest,
// which adds the test helpers (an ensemble per test, a shared one per package, skip or
// fail when ZooKeeper is missing).
//
// ZooKeeper is found through ZOOKEEPER_CLASSPATH (a Java class path), else ZOOKEEPER_HOME
// (a tarball install: $ZOOKEEPER_HOME/lib/*), else Debian's jars in /usr/share/java.
package zkens
