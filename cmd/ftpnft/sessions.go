package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/internal/input"
)

// sessions lists the FTP sessions the helper follows: each control
// connection with its data connections (and their traffic, when conntrack
// counts it) and its pending expectations; --watch lists them again every
// second until interrupted.
func sessions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ftpnft sessions", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	netns := fs.String("netns", "", "")
	asJSON := fs.Bool("json", false, "")
	watch := fs.Bool("watch", false, "")
	err := flagError(fs, fs.Parse(args))
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %s", input.Quote(fs.Arg(0)))
	}
	var path string
	var opts []conntrack.Option
	if err == nil && given(fs, "netns") {
		if path, err = netnsPath(*netns); err == nil {
			opts = append(opts, conntrack.WithNetNS(path))
		}
	}
	if code, done := parsed("sessions", err, stdout, stderr); done {
		return code
	}
	if sys, err := helper.ReadSysctls(path); err == nil && sys.Acct != "1" && !*asJSON {
		where := ""
		if *netns != "" {
			where = "ip netns exec " + *netns + " "
		}
		fmt.Fprintf(stderr, "ftpnft sessions: conntrack does not count packets and bytes (net.netfilter.nf_conntrack_acct=0); turn it on with: %ssysctl -w net.netfilter.nf_conntrack_acct=1 (it counts connections made after that)\n", where)
	}
	if !*watch {
		return showSessions(ctx, opts, *asJSON, stdout, stderr)
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if !*asJSON {
			fmt.Fprintf(stdout, "-- %s\n", time.Now().Format(time.TimeOnly))
		}
		if code := showSessions(ctx, opts, *asJSON, stdout, stderr); code != exitOK {
			if ctx.Err() != nil {
				return exitOK
			}
			return code
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// showSessions prints the sessions once: aligned for people, or one JSON
// array.
func showSessions(ctx context.Context, opts []conntrack.Option, asJSON bool, stdout, stderr io.Writer) int {
	ss, err := conntrack.Sessions(ctx, opts...)
	if err != nil {
		return fail(stderr, "sessions", err)
	}
	if asJSON {
		if ss == nil {
			ss = []conntrack.Session{}
		}
		b, err := json.Marshal(ss)
		if err != nil {
			return fail(stderr, "sessions", err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	var table strings.Builder
	w := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CONTROL\tDATA\tMODE\tPACKETS\tBYTES")
	for _, s := range ss {
		fmt.Fprintf(w, "%s\t\t\t\t\n", s.Control)
		for _, d := range s.Data {
			fmt.Fprintf(w, "\t%s\t%s\t%d\t%d\n", d.Flow, d.Mode, d.Packets, d.Bytes)
		}
		for _, x := range s.Expectations {
			fmt.Fprintf(w, "\t%s\texpected (%ds left)\t\t\n", x.Expected, x.Timeout)
		}
	}
	w.Flush()
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(stdout, strings.TrimRight(line, " \n"))
	}
	return exitOK
}
