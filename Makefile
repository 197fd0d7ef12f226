.PHONY: test demo package setup bench bench-idle bench-micro lint build reliability reliability-short fuzz

build:
	go build -o bin/zkgate ./cmd/zkgate

# Each installs what is missing first (scripts/setup.sh says what; without root it prints
# the one command to run instead). ZKGATE_SETUP=skip skips that.
test:
	bash scripts/setup.sh test
	go test -race -count=1 ./...
	cd deploy/kubernetes && go test -count=1 ./...

demo:
	bash scripts/setup.sh demo
	go run ./cmd/zkgate demo

# everything .ci/run needs, installed (or the command to install it)
setup:
	bash scripts/setup.sh ci

# dist/zkgate_<version>_<arch>.deb: /usr/bin/zkgate, /etc/zkgate/zkgate.yaml, zkgate.service
# (VERSION and GOARCH may be set)
package:
	bash packaging/build-deb.sh

# direct vs zkgate vs HAProxy on a real ensemble (installs haproxy when missing)
bench:
	go run ./bench -rounds 5 -duration 5s

# RSS per idle session through zkgate
bench-idle:
	go run ./bench -idle 9900 -idle-for 30s

# Go micro-benchmarks of the hot path: codec, relay, breaker
bench-micro:
	go test -run '^$$' -bench . -benchmem ./jute ./proxy ./breaker

lint:
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# the reliability suite: seven faults under load on a real ensemble, the linearizability
# check, then hostile input and floods; writes the tables into RELIABILITY.md
reliability:
	go run ./reliability -out RELIABILITY.md

# the short form CI runs: one fault and the linearizability check, under 2 minutes
reliability-short:
	go run ./reliability -short

# every fuzz target for FUZZTIME each (crashers land in testdata/fuzz as seeds)
FUZZTIME ?= 10m
fuzz:
	for t in FuzzRequestBody FuzzResponseBody FuzzHandshake FuzzFrames; do \
		go test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./jute || exit 1; done
	go test -run '^$$' -fuzz '^FuzzRelay$$' -fuzztime $(FUZZTIME) ./proxy
