# ftpnft tasks. `just test` is what CI runs (as root).

staticcheck := "honnef.co/go/tools/cmd/staticcheck@v0.7.0"

# Build the ftpnft binary into ./bin: static, as the tests build it.
build:
    CGO_ENABLED=0 go build -o bin/ftpnft ./cmd/ftpnft

# Unit tests and namespace tests (needs root, vsftpd, lftp, curl, nft, ip).
test:
    go test -race -tags netns ./...

# Unit tests only: no root needed.
unit:
    go test -race ./...

# Namespace tests only (root).
netns:
    go test -race -tags netns -v ./integration/

# go vet and staticcheck, with and without the netns tag.
lint:
    go vet ./...
    go vet -tags netns ./...
    go run {{staticcheck}} ./...
    go run {{staticcheck}} -tags netns ./...

# Run every fuzz target (FUZZTIME=1000000x just fuzz for longer).
fuzz:
    scripts/fuzz

# The Debian package dist/ftpnft_VERSION_ARCH.deb (binary, systemd unit, /etc/ftpnft/ftpnft.yaml, docs).
package:
    scripts/package

# Side-by-side benchmarks against nft -f and conntrack-tools (root; see docs/BENCHMARKS.md).
bench:
    scripts/bench
