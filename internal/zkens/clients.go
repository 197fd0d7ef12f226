package zkens

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// JavaCLI returns the Java client shell (org.apache.zookeeper.ZooKeeperMain, zkCli)
// connected to server. With args it runs them as one command and exits; without, it
// reads commands from its standard input.
func (i Install) JavaCLI(ctx context.Context, server string, args ...string) *exec.Cmd {
	return i.JavaCLIWith(ctx, nil, server, args...)
}

// JavaCLIWith is JavaCLI with JVM flags: the client's system properties, such as
// -Dzookeeper.client.secure=true for TLS.
func (i Install) JavaCLIWith(ctx context.Context, jvm []string, server string, args ...string) *exec.Cmd {
	all := append([]string{"-Xshare:auto", "-XX:TieredStopAtLevel=1"}, jvm...)
	all = append(all, "-cp", i.ClassPath, "org.apache.zookeeper.ZooKeeperMain", "-server", server)
	return exec.CommandContext(ctx, i.Java, append(all, args...)...)
}

// CClient is the path of the C client shell cli_mt: ZOOKEEPER_CLI_MT, or Debian's
// (apt-get install zookeeper-bin).
func CClient() (string, error) {
	p := os.Getenv("ZOOKEEPER_CLI_MT")
	if p == "" {
		p = "/usr/lib/zookeeper/bin/cli_mt"
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: C client %s missing (apt-get install zookeeper-bin, or set ZOOKEEPER_CLI_MT)", ErrNotInstalled, p)
	}
	return p, nil
}
