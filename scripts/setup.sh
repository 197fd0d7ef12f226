#!/usr/bin/env bash
# Installs what zkgate's demo, tests or CI need on a Debian machine that has Go, and says
# what it installs and why. `make demo`, `make test` and .ci/run call it:
#
#   bash scripts/setup.sh demo   # ZooKeeper and a Java runtime
#   bash scripts/setup.sh test   # and the clients the end-to-end tests drive (zkCli's C twin
#                                # cli_mt, kazoo, node-zookeeper-client, Curator with a JDK),
#                                # promtool, tmux and Chromium for the operator views
#   bash scripts/setup.sh ci     # and what .ci/run checks besides: docker-compose, systemd
#                                # (systemd-analyze verify on the packaged unit)
#
# As root it runs apt-get. Otherwise it prints the one command to run and exits 1 (nothing
# is half-installed). ZKGATE_SETUP=skip skips it (tests then skip what is missing, unless
# CI=true). Exit 0 when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}
case $mode in demo | test | ci) ;; *) echo "usage: $0 demo|test|ci" >&2; exit 2 ;; esac
if [ "${ZKGATE_SETUP:-}" = skip ]; then
	exit 0
fi

command -v go >/dev/null || {
	echo "setup: Go is missing: install Go 1.26 or newer (https://go.dev/dl), then run this again" >&2
	exit 1
}

need=() why=()
want() { # want PACKAGE... -- REASON: adds the packages when the test before it failed
	local pkgs=()
	while [ "$1" != -- ]; do pkgs+=("$1"); shift; done
	shift
	need+=("${pkgs[@]}")
	why+=("${pkgs[*]}: $*")
}

# demo: a local ensemble from the installed ZooKeeper (internal/zkens finds the jars)
[ -e /usr/share/java/zookeeper.jar ] || [ -n "${ZOOKEEPER_HOME:-}${ZOOKEEPER_CLASSPATH:-}" ] ||
	want zookeeper -- "the ZooKeeper server the demo and the tests run (jars in /usr/share/java)"
command -v java >/dev/null || [ -n "${JAVA:-}${JAVA_HOME:-}" ] ||
	want default-jre-headless -- "Java, to run ZooKeeper"

if [ "$mode" != demo ]; then
	[ -x /usr/lib/zookeeper/bin/cli_mt ] || [ -n "${ZOOKEEPER_CLI_MT:-}" ] ||
		want zookeeper-bin -- "the C client cli_mt, driven through zkgate"
	/usr/bin/python3 -c 'import kazoo' 2>/dev/null || [ -n "${ZKGATE_PYTHON:-}" ] ||
		want python3-kazoo -- "the Python client kazoo, driven through zkgate"
	command -v node >/dev/null || want nodejs -- "Node, for node-zookeeper-client through zkgate"
	command -v npm >/dev/null || want npm -- "npm, to install node-zookeeper-client (testdata/clients/node)"
	[ -e /usr/share/java/curator-framework.jar ] ||
		want libcurator-framework-java libcurator-recipes-java -- "Curator 5.4, whose EnsembleTracker reads /zookeeper/config through zkgate"
	command -v javac >/dev/null || want default-jdk-headless -- "javac, to compile the Curator test client"
	command -v promtool >/dev/null || want prometheus -- "promtool: lints the alert rules and a live /metrics"
	command -v tmux >/dev/null || want tmux -- "zkgate top under a terminal, in TestOperatorViews"
	command -v chromium >/dev/null || want chromium -- "the status page in headless Chromium, in TestOperatorViews"
fi
if [ "$mode" = ci ]; then
	command -v docker-compose >/dev/null || want docker-compose -- "docker-compose config: checks docker-compose.yml"
	command -v systemd-analyze >/dev/null || want systemd -- "systemd-analyze verify: checks the packaged zkgate.service"
	command -v dpkg-deb >/dev/null || want dpkg -- "dpkg-deb: builds and lists the .deb"
fi

if [ ${#need[@]} -gt 0 ]; then
	echo "setup ($mode): missing:"
	printf '  %s\n' "${why[@]}"
	if ! command -v apt-get >/dev/null; then
		echo "setup: no apt-get here: install the above by hand (see README.md, Prerequisites)" >&2
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "setup: not root; run this, then the make target again:" >&2
		echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${need[*]}" >&2
		exit 1
	fi
	echo "setup: apt-get install ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
	echo "setup ($mode): everything needed is installed"
fi

# node-zookeeper-client, from the lock file (no root needed; CI always installs it afresh)
if [ "$mode" != demo ]; then
	if [ "$mode" = ci ] || [ ! -d testdata/clients/node/node_modules ]; then
		echo "setup: npm ci --prefix testdata/clients/node (node-zookeeper-client for the end-to-end tests)"
		npm ci --prefix testdata/clients/node --no-audit --no-fund --loglevel=error
	fi
fi
