package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ftpnft/ftpnft/internal/selftest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == selftest.PeerCommand {
		// A selftest peer, started by `ftpnft selftest` in a namespace of its own.
		if err := selftest.Peer(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "ftpnft selftest peer:", err)
			os.Exit(exitFailure)
		}
		os.Exit(exitOK)
	}
	// ftpnft's commands are short and allocate a few MiB. At Go's default
	// heap goal (4 MiB) most of them stopped for a garbage collection,
	// starting its worker threads, just before exiting: 10% of an
	// `expectations --json` of 4,000 (docs/BENCHMARKS.md). A watch keeps a
	// small live heap, so five times it is still small.
	debug.SetGCPercent(400)
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// interruptible returns ctx, cancelled by SIGINT or SIGTERM, for the
// commands that clean up or finish their output when stopped: selftest and
// expectations --watch (doctor --trace catches SIGPIPE too, see runTrace). The others let those signals end them at once: each
// changes the kernel in one atomic batch or not at all. (Catching signals
// costs a command three more threads: 0.5 ms, a tenth of a listing.)
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
