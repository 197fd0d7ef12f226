.PHONY: test demo bench lint build

build:
	go build -o bin/zkgate ./cmd/zkgate

test:
	go test -race -count=1 ./...

demo:
	go run ./cmd/zkgate demo

bench:
	go test -run '^$$' -bench . -benchmem ./jute ./proxy

lint:
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
