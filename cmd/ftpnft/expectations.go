package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/internal/input"
)

func expectations(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ftpnft expectations", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	netns := fs.String("netns", "", "")
	helperName := fs.String("helper", "ftp", "")
	watch := fs.Bool("watch", false, "")
	asJSON := fs.Bool("json", false, "")
	err := flagError(fs, fs.Parse(args))
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %s", input.Quote(fs.Arg(0)))
	}
	if err == nil && !validHelperName(*helperName) {
		err = fmt.Errorf("helper %s: want a kernel helper name such as ftp", input.Quote(*helperName))
	}
	opts := []conntrack.Option{conntrack.WithHelper(*helperName)}
	if err == nil && given(fs, "netns") {
		var p string
		if p, err = netnsPath(*netns); err == nil {
			opts = append(opts, conntrack.WithNetNS(p))
		}
	}
	if code, done := parsed("expectations", err, stdout, stderr); done {
		return code
	}

	if *watch {
		ctx, stop := interruptible(ctx)
		defer stop()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		where := "this network namespace"
		if *netns != "" {
			where = "network namespace " + *netns
		}
		opts = append(opts, conntrack.WithReady(func() {
			fmt.Fprintf(stderr, "ftpnft: watching expectations of helper %q in %s (Ctrl-C to stop)\n", *helperName, where)
		}))
		out := newLineWriter(stdout, lostEvents(*asJSON), cancel)
		err := conntrack.Watch(ctx, func(ev conntrack.Event) {
			if *asJSON {
				b, _ := ev.MarshalJSON()
				out.line(append(b, '\n'))
			} else {
				out.line([]byte(ev.String() + "\n"))
			}
		}, opts...)
		if werr := out.close(); err == nil && werr != nil {
			err = fmt.Errorf("write output: %w", werr)
		}
		if err != nil {
			return fail(stderr, "expectations", err)
		}
		return exitOK
	}

	if *asJSON {
		if err := conntrack.WriteJSON(context.Background(), stdout, opts...); err != nil {
			return fail(stderr, "expectations", err)
		}
		return exitOK
	}
	xs, err := conntrack.List(context.Background(), opts...)
	if err != nil {
		return fail(stderr, "expectations", err)
	}
	if len(xs) == 0 {
		fmt.Fprintln(stdout, "no expectations")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HELPER\tPROTO\tEXPECTED DATA CONNECTION\tCONTROL CONNECTION\tTIME LEFT")
	for _, x := range xs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%ds\n", x.Helper, x.Proto, x.Expected, x.Master, x.Timeout)
	}
	tw.Flush()
	return exitOK
}
