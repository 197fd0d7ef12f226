package zkens

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotInstalled means no ZooKeeper (or no Java) was found on this machine.
var ErrNotInstalled = errors.New("zkens: ZooKeeper not found")

const debianJars = "/usr/share/java"

// Install says where ZooKeeper and Java are.
type Install struct {
	Java      string // path of the java binary
	ClassPath string // class path holding QuorumPeerMain and ZooKeeperMain
}

// Locate finds Java and ZooKeeper through ZOOKEEPER_CLASSPATH, ZOOKEEPER_HOME or Debian's
// jars, in that order. The error wraps ErrNotInstalled and says what was tried.
func Locate() (Install, error) {
	java := os.Getenv("JAVA")
	if java == "" {
		if home := os.Getenv("JAVA_HOME"); home != "" {
			java = filepath.Join(home, "bin", "java")
		} else if p, err := exec.LookPath("java"); err == nil {
			java = p
		}
	}
	if java == "" {
		return Install{}, fmt.Errorf("%w: no java on PATH and JAVA/JAVA_HOME unset", ErrNotInstalled)
	}
	if cp := os.Getenv("ZOOKEEPER_CLASSPATH"); cp != "" {
		return Install{Java: java, ClassPath: cp}, nil
	}
	if home := os.Getenv("ZOOKEEPER_HOME"); home != "" {
		jars, _ := filepath.Glob(filepath.Join(home, "lib", "*.jar"))
		top, _ := filepath.Glob(filepath.Join(home, "zookeeper-*.jar"))
		jars = append(jars, top...)
		if len(jars) == 0 {
			return Install{}, fmt.Errorf("%w: ZOOKEEPER_HOME=%s holds no lib/*.jar", ErrNotInstalled, home)
		}
		return Install{Java: java, ClassPath: strings.Join(jars, ":")}, nil
	}
	main := filepath.Join(debianJars, "zookeeper.jar")
	if _, err := os.Stat(main); err != nil {
		return Install{}, fmt.Errorf("%w: %s missing (apt-get install zookeeper, or set ZOOKEEPER_HOME or ZOOKEEPER_CLASSPATH)", ErrNotInstalled, main)
	}
	cp := []string{main}
	// Debian's jar manifest pulls in its dependencies; slf4j-simple gives us member logs
	// on stderr instead of the NOP logger.
	// The manifest misses netty-codec and netty-resolver, which the Netty connection
	// factory (secureClientPort, TLS) and the Netty client socket need.
	for _, jar := range []string{"slf4j-simple.jar", "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-unix-common.jar"} {
		if _, err := os.Stat(filepath.Join(debianJars, jar)); err == nil {
			cp = append(cp, filepath.Join(debianJars, jar))
		}
	}
	return Install{Java: java, ClassPath: strings.Join(cp, ":")}, nil
}

// InCI reports whether a missing ZooKeeper must fail instead of skip (CI=true).
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}
