package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/internal/input"
	"github.com/ftpnft/ftpnft/nft"
)

// banOptions are the flags of ban, unban and bans.
type banOptions struct {
	nets  []netip.Prefix
	d     time.Duration // ban --for
	json  bool          // bans --json
	table string
	nft   []nft.Option
	ct    []conntrack.Option
}

// parseBanFlags reads the flags and arguments of ban, unban or bans.
func parseBanFlags(cmd string, args []string) (*banOptions, error) {
	fs := flag.NewFlagSet("ftpnft "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	netns := fs.String("netns", "", "")
	o := &banOptions{}
	fs.StringVar(&o.table, "table", nft.DefaultTable, "")
	var d string
	if cmd == "ban" {
		fs.StringVar(&d, "for", "", "")
	}
	if cmd == "bans" {
		fs.BoolVar(&o.json, "json", false, "")
	}
	// Flags may come after the addresses too: ban 192.0.2.7 --for 1h.
	var addrs []string
	for {
		if err := flagError(fs, fs.Parse(args)); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		addrs, args = append(addrs, fs.Arg(0)), fs.Args()[1:]
	}
	if cmd == "bans" && len(addrs) > 0 {
		return nil, fmt.Errorf("unexpected argument %s", input.Quote(addrs[0]))
	}
	if cmd != "bans" && len(addrs) == 0 {
		return nil, fmt.Errorf("name the addresses or networks to %s (ADDR or CIDR)", cmd)
	}
	for _, a := range addrs {
		// What a server listening on IPv6 logs for an IPv4 client.
		if m, err := netip.ParseAddr(a); err == nil && m.Is4In6() {
			a = m.Unmap().String()
		}
		p, err := nft.ParseSource(a)
		if err != nil {
			return nil, err
		}
		o.nets = append(o.nets, p)
	}
	if d != "" {
		var err error
		if o.d, err = parseBanDuration(d); err != nil {
			return nil, err
		}
	}
	if given(fs, "netns") {
		p, err := netnsPath(*netns)
		if err != nil {
			return nil, err
		}
		o.nft = append(o.nft, nft.WithNetNS(p))
		o.ct = append(o.ct, conntrack.WithNetNS(p))
	}
	return o, nil
}

// netsText lists networks as people write them (an address alone without
// its /32 or /128), the first eight of them.
func netsText(nets []netip.Prefix) string {
	const shown = 8
	var s []string
	for _, p := range nets[:min(shown, len(nets))] {
		if p.IsSingleIP() {
			s = append(s, p.Addr().String())
		} else {
			s = append(s, p.String())
		}
	}
	if len(nets) > shown {
		s = append(s, fmt.Sprintf("… %d more", len(nets)-shown))
	}
	return strings.Join(s, ", ")
}

// parseBanDuration reads a ban's time: Go's durations (90s, 10m, 1h30m)
// and days (7d).
func parseBanDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("--for %s: want a duration such as 90s, 10m, 1h or 7d", input.Quote(s))
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d < time.Second || d > 10*365*24*time.Hour {
		return 0, fmt.Errorf("--for %s: want at least a second and at most ten years", input.Quote(s))
	}
	return d, nil
}

// banCommand runs ban, unban or bans.
func banCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	o, err := parseBanFlags(cmd, args)
	if code, done := parsed(cmd, err, stdout, stderr); done {
		return code
	}
	switch cmd {
	case "ban":
		if err := nft.AddBans(ctx, o.table, o.nets, o.d, o.nft...); err != nil {
			return fail(stderr, cmd, err)
		}
		// The bans drop the sessions' next packets; deleting the
		// connections ends them for good.
		cut, err := conntrack.Cut(ctx, o.nets, o.ct...)
		how := "until unbanned"
		if o.d > 0 {
			how = "for " + o.d.String()
		}
		fmt.Fprintf(stdout, "banned %s %s; %d connections cut\n", netsText(o.nets), how, cut)
		if err != nil {
			fmt.Fprintf(stderr, "ftpnft ban: warning: open sessions not cut: %v\n", err)
		}
	case "unban":
		n, err := nft.RemoveBans(ctx, o.table, o.nets, o.nft...)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "unbanned %s (%d of the bans changed)\n", netsText(o.nets), n)
	default:
		bans, err := nft.ReadBans(ctx, o.table, o.nft...)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		if o.json {
			if bans == nil {
				bans = []nft.Ban{}
			}
			b, err := json.Marshal(bans)
			if err != nil {
				return fail(stderr, cmd, err)
			}
			fmt.Fprintf(stdout, "%s\n", b)
			return exitOK
		}
		w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "NETWORK\tLEFT")
		for _, b := range bans {
			left := "until unbanned"
			if b.Left > 0 {
				left = b.Left.Round(time.Second).String()
			}
			fmt.Fprintf(w, "%s\t%s\n", b.Net, left)
		}
		w.Flush()
	}
	return exitOK
}
