// Package zktest runs a real Apache ZooKeeper ensemble on loopback for tests.
//
// The ensemble itself (member processes, configs, logs) is internal/zkens, which knows
// nothing of zkgate: it is the ground truth that zkgate is tested against, so it talks to
// members with nothing but a raw four-letter word. zktest adds what tests need on top.
//
// Typical use in a test that breaks things:
//
//	ens := zktest.Start(t, zktest.Config{Members: 3})
//	leader := ens.Leader(t)
//	leader.Kill()
//	ens.WaitLeader(t, 10*time.Second)
//
// and, for a package whose tests only read, one shared ensemble:
//
//	var shared *zktest.Ensemble
//	func TestMain(m *testing.M) { os.Exit(zktest.Main(m, zktest.Config{Members: 3}, &shared)) }
//	func TestX(t *testing.T) { ens := zktest.Require(t, shared); ... }
//
// ZooKeeper is found through ZOOKEEPER_CLASSPATH (a Java class path), else ZOOKEEPER_HOME
// (a tarball install: $ZOOKEEPER_HOME/lib/*), else Debian's jars in /usr/share/java. When it
// cannot be found the tests skip with a message, except under CI=true, where they fail.
package zktest
