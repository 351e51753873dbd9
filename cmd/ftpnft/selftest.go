package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ftpnft/ftpnft/internal/input"
	"github.com/ftpnft/ftpnft/internal/selftest"
)

func selfTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			fmt.Fprint(stdout, help("selftest"))
			return exitOK
		}
		fmt.Fprintf(stderr, "ftpnft selftest: unexpected argument %s\n", input.Quote(args[0]))
		return exitUsage
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	err := selftest.Run(ctx, stdout)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, selftest.ErrFailed):
		return exitFailure
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "ftpnft selftest: interrupted; namespaces removed")
		return exitFailure
	}
	return fail(stderr, "selftest", err)
}
