.PHONY: test demo bench bench-idle bench-micro lint build reliability reliability-short fuzz

build:
	go build -o bin/zkgate ./cmd/zkgate

test:
	go test -race -count=1 ./...

demo:
	go run ./cmd/zkgate demo

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
