package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ftpnft/ftpnft/selftest"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
