.PHONY: test demo bench bench-idle bench-micro lint build

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
