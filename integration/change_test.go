//go:build netns

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft"
)

// This file proves that `ftpnft install` over an existing table changes it
// by difference, in one atomic batch, the way a user meets it: run-time
// state (per-source connection counts), rule handles and counters survive
// an unrelated change, transfers in flight go on, a one-line change of a
// large allowlist sends one element out and one in, and a change the
// kernel rejects halfway leaves the table exactly as it was.

// changeRule is one rule of ftpnft's table as `nft -a list table` shows it.
type changeRule struct {
	handle  int
	packets uint64 // 0 when the rule has no counter
	counted bool   // the rule has a counter
	text    string
}

var (
	changeChainRE   = regexp.MustCompile(`^\s*chain (\S+) \{`)
	changeCommentRE = regexp.MustCompile(`comment "([^"]*)"`)
	changeHandleRE  = regexp.MustCompile(`# handle (\d+)$`)
	changePacketsRE = regexp.MustCompile(`counter packets (\d+) bytes \d+`)
)

// changeRules parses a listing of `nft -a list table inet ftpnft` into its
// commented rules, keyed "chain: comment".
func changeRules(t *testing.T, listing string) map[string]changeRule {
	t.Helper()
	rules := map[string]changeRule{}
	chain := ""
	for _, line := range strings.Split(listing, "\n") {
		if m := changeChainRE.FindStringSubmatch(line); m != nil {
			chain = m[1]
			continue
		}
		c := changeCommentRE.FindStringSubmatch(line)
		h := changeHandleRE.FindStringSubmatch(line)
		if c == nil || h == nil {
			continue
		}
		r := changeRule{text: strings.TrimSpace(line)}
		r.handle, _ = strconv.Atoi(h[1])
		if p := changePacketsRE.FindStringSubmatch(line); p != nil {
			r.packets, _ = strconv.ParseUint(p[1], 10, 64)
			r.counted = true
		}
		key := chain + ": " + c[1]
		if _, dup := rules[key]; dup {
			t.Fatalf("rule %q twice in the listing:\n%s", key, listing)
		}
		rules[key] = r
	}
	if len(rules) == 0 {
		t.Fatalf("no rules in the listing:\n%s", listing)
	}
	return rules
}

// changeInstall runs `ftpnft install` with args, fails the test unless it
// exits 0 and its output contains want, and returns the output and how long
// it took.
func changeInstall(t *testing.T, want string, args ...string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	out := mustFtpnft(t, append([]string{"install"}, args...)...)
	took := time.Since(start)
	if !strings.Contains(out, want) {
		t.Fatalf("ftpnft install %q said %q, want %q", args, out, want)
	}
	return out, took
}

// TestChangeKeepsRuntimeState proves that an unrelated change (a service
// added to the input chain) keeps the run-time state of the table: the
// per-source connection count in the dynamic set ftp-conn4 survives, so a
// client holding its two allowed control connections is still refused a
// third one after the change, and the rules that were there keep their
// handles and counters. Before, install deleted and re-created the table,
// which forgot every count: connections open at the time no longer counted
// against the limit. The negative control is exactly that: a table created
// anew (after uninstall) admits a third connection although two are still
// open.
func TestChangeKeepsRuntimeState(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	changeInstall(t, "table inet ftpnft installed", "--netns", srv.Path, "--max-conn-per-source", "2")

	r1, r2 := holdControl(t, cli, srv.V4), holdControl(t, cli, srv.V4)
	defer r1()
	defer r2()
	waitEstablished(t, srv, 21, 2)
	if err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("third connection over a limit of 2: %v, want connection refused", err)
	}
	beforeList := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	before := changeRules(t, beforeList)
	const established, overLimit = "input: ftpnft: established", "ftp-control: ftpnft: over 2 connections per source ipv4"
	if before[established].packets == 0 || before[overLimit].packets == 0 {
		t.Fatalf("counters before the change are zero (%q: %d, %q: %d):\n%s",
			established, before[established].packets, overLimit, before[overLimit].packets, beforeList)
	}

	out, took := changeInstall(t, "table inet ftpnft updated (1 rule added)", "--netns", srv.Path, "--max-conn-per-source", "2", "--allow", "tcp/22")
	t.Logf("change: %v: %s", took.Round(time.Millisecond), strings.TrimSpace(out))

	// The count of two connections per source survived the change.
	err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("third connection after the change: %v, want connection refused (the per-source count was lost)", err)
	}
	t.Logf("third connection after the change: %v", err)

	afterList := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	after := changeRules(t, afterList)
	for key, b := range before {
		a, ok := after[key]
		switch {
		case !ok:
			t.Errorf("rule %q is gone after the change", key)
		case a.handle != b.handle:
			t.Errorf("rule %q: handle %d before the change, %d after", key, b.handle, a.handle)
		case b.counted && a.packets < b.packets:
			t.Errorf("rule %q: counter went back from %d to %d packets", key, b.packets, a.packets)
		}
	}
	if _, ok := after["input: ftpnft: allow tcp/22"]; !ok {
		t.Errorf("the change did not add the rule for tcp/22:\n%s", afterList)
	}
	// The refused third connection was counted by the very same rule.
	if after[overLimit].packets <= before[overLimit].packets {
		t.Errorf("%q: %d packets before, %d after a refused connection", overLimit, before[overLimit].packets, after[overLimit].packets)
	}
	if t.Failed() {
		t.Fatalf("--- before\n%s\n--- after\n%s", beforeList, afterList)
	}
	t.Logf("%q: handle %d, %d packets before and %d after; %q: %d then %d packets",
		established, after[established].handle, before[established].packets, after[established].packets,
		overLimit, before[overLimit].packets, after[overLimit].packets)

	// Negative control: a table created anew starts with empty dynamic
	// sets, so with the same two connections still open a third one is
	// admitted.
	mustFtpnft(t, "uninstall", "--netns", srv.Path)
	changeInstall(t, "table inet ftpnft installed", "--netns", srv.Path, "--max-conn-per-source", "2", "--allow", "tcp/22")
	waitEstablished(t, srv, 21, 2)
	if err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second); err != nil {
		t.Fatalf("third connection after the table was created anew: %v, want admitted (the new table knows no counts)", err)
	}
}

// changeDownload is a download running in the background.
type changeDownload struct {
	mode Mode
	url  string
	done chan struct{}
	body []byte
	err  error
	took time.Duration
}

// changeStartDownload starts curl in cli fetching url in a passive mode and
// returns at once. As with Curl, the protocol trace must show that mode
// alone. The result is in the changeDownload once done is closed.
func changeStartDownload(t *testing.T, cli *Host, mode Mode, url string) *changeDownload {
	t.Helper()
	d := &changeDownload{mode: mode, url: url, done: make(chan struct{})}
	args := []string{"-q", "--silent", "--show-error", "--verbose",
		"--connect-timeout", strconv.Itoa(connectLimit), "--max-time", "40"}
	switch mode {
	case PASV:
		args = append(args, "--ftp-pasv", "--disable-epsv", "--no-ftp-skip-pasv-ip")
	case EPSV:
		args = append(args, "--ftp-pasv")
	default:
		t.Fatalf("changeStartDownload: passive modes only, not %s", mode)
	}
	args = append(args, url)
	go func() {
		defer close(d.done)
		start := time.Now()
		body, trace, err := cli.run(45*time.Second, nil, nil, "curl", args...)
		d.took = time.Since(start)
		d.body, d.err = body, checkMode("curl", mode, dataCommands(trace, "> "), err)
	}()
	return d
}

// finished reports whether the download has ended.
func (d *changeDownload) finished() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// TestChangeKeepsTransferInFlight proves that passive downloads in flight
// go on, byte-identical, while the table is changed five times under them:
// a service allowed, a source allowlist added (which routes control
// connections through a new chain), the input policy switched to accept
// and back to drop, and a blocklist added. Every change is an update in
// place. There is no negative control: replacing the whole table in one
// batch (delete and create, as `nft -f` of render's output does) keeps
// established transfers too, because they are admitted by their conntrack
// state and their helper lives in the conntrack entry, both outside the
// table (checked by hand with this very test: the same five changes loaded
// whole through nft -f left both downloads complete and identical). The
// test guards against a change that broke them, say one that left the
// input chain for a moment without its established rule.
func TestChangeKeepsTransferInFlight(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	ns := []string{"--netns", srv.Path}
	changeInstall(t, "table inet ftpnft installed", ns...)

	// The server's link to the client is slowed to 20 Mbit/s, so that the
	// two downloads of 6 MiB each, over IPv4 and IPv6, take about five
	// seconds. (curl 7.88's --limit-rate proved no brake for FTP: a 6 MiB
	// download limited to 1200k/s often ended within 0.3 s.)
	requireTool(t, "tc")
	srv.MustExec(t, "tc", "qdisc", "add", "dev", "eth-cli", "root", "tbf", "rate", "20mbit", "burst", "64kb", "latency", "200ms")
	downloads := []*changeDownload{
		changeStartDownload(t, cli, PASV, URL(srv.V4, 21, "/big.bin")),
		changeStartDownload(t, cli, EPSV, URL(srv.V6, 21, "/big.bin")),
	}
	// Both data connections are established (two control and two data
	// connections on the server) before the first change.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := strings.TrimSpace(srv.MustExec(t, "ss", "-Htn", "state", "established"))
		if out != "" && strings.Count(out, "\n")+1 >= 4 {
			break
		}
		for _, d := range downloads {
			if d.finished() {
				t.Fatalf("the %s download ended before the first change (%d bytes in %v): %v", d.mode, len(d.body), d.took, d.err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two downloads did not both reach their data connection:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	flags := ns
	for _, change := range [][]string{
		{"--allow", "tcp/22"},
		{"--source", "192.0.2.0/24", "--source", "2001:db8:f7::/64"},
		{"--policy", "accept"},
		{"--policy", "drop"},
		{"--block", "198.51.100.0/24"},
	} {
		// Flags given later win: the second --policy replaces the first.
		flags = append(append([]string(nil), flags...), change...)
		out, took := changeInstall(t, "table inet ftpnft updated (", flags...)
		t.Logf("%v in %v: %s", change, took.Round(time.Millisecond), strings.TrimSpace(out))
	}
	for _, d := range downloads {
		if d.finished() {
			t.Fatalf("the %s download finished before the last change: the test proved nothing (raise the file size or lower --limit-rate)", d.mode)
		}
	}
	st, _ := readStatus(t, flags...)
	if !st.Matches || st.Policy != nft.PolicyDrop || len(st.Sources) != 2 {
		t.Fatalf("status after the changes: %+v", st)
	}
	for _, d := range downloads {
		<-d.done
		if d.err != nil {
			t.Errorf("%s download of %s across the changes: %v", d.mode, d.url, d.err)
			continue
		}
		if !bytes.Equal(d.body, files["big.bin"]) {
			t.Errorf("%s download across the changes: got %d bytes, want %d identical bytes", d.mode, len(d.body), len(files["big.bin"]))
			continue
		}
		t.Logf("%s download of %d bytes across five changes: complete and identical, in %v", d.mode, len(d.body), d.took.Round(time.Millisecond))
	}
}

// changeWriteList writes one address a line to a file in dir.
func changeWriteList(t *testing.T, dir, name string, addrs []string) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// changeMonitor runs `nft monitor` in h and collects what it reports
// between Begin and End.
type changeMonitor struct {
	h *Host
	p *proc
}

// changeStartMonitor starts `nft monitor` in h and returns once it reports
// events: it adds (and deletes) a marker table until the monitor shows it.
func changeStartMonitor(t *testing.T, h *Host) *changeMonitor {
	t.Helper()
	m := &changeMonitor{h: h, p: h.start(t, nil, "nft", "monitor")}
	m.mark(t, "changebegin")
	h.MustExec(t, "nft", "delete", "table", "inet", "changebegin")
	return m
}

// mark adds table inet name and waits until the monitor reported it.
func (m *changeMonitor) mark(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.h.MustExec(t, "nft", "add", "table", "inet", name)
		wait := time.Now().Add(time.Second)
		for time.Now().Before(wait) {
			if strings.Contains(m.p.readOutput(), "add table inet "+name) {
				return
			}
			time.Sleep(pollInterval)
		}
		if m.p.exited() || time.Now().After(deadline) {
			t.Fatalf("nft monitor did not report table %s:\n%s", name, m.p.readOutput())
		}
		m.h.MustExec(t, "nft", "delete", "table", "inet", name) // and try again
	}
}

// stop ends the monitor after it reported everything so far, and returns
// the events between its start and now, one a line, without the markers
// and the generation comments.
func (m *changeMonitor) stop(t *testing.T) []string {
	t.Helper()
	m.mark(t, "changeend")
	m.h.MustExec(t, "nft", "delete", "table", "inet", "changeend")
	out := m.p.readOutput()
	if err := m.p.stop(); err != nil {
		t.Fatal(err)
	}
	// The begin marker may show more than once (added again after the
	// monitor missed it); the events start after its last deletion.
	const begin, end = "delete table inet changebegin", "add table inet changeend"
	i, j := strings.LastIndex(out, begin), strings.Index(out, end)
	if i < 0 || j < i {
		t.Fatalf("nft monitor output lacks the markers:\n%s", out)
	}
	out = out[i+len(begin) : j]
	var events []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "# new generation") {
			continue
		}
		events = append(events, line)
	}
	return events
}

// TestOneLineChange proves that changing one line of a 100,001-line
// allowlist file sends one element out and one in, nothing else: the dry
// run says so, `nft monitor` sees only those two elements (and the stamp
// rule replaced), and traffic follows: the new address may open control
// connections and the removed one no longer may. Before, every change
// re-sent the whole set. The traffic before the change is the negative
// control of the traffic after it: there, the removed address works and
// the new one does not.
func TestOneLineChange(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	addrs := []string{cli.V4.String()}
	for i := range 100_000 {
		a := 10<<24 + 2*i // every other address: no two merge into a range
		addrs = append(addrs, fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&255, a>>8&255, a&255))
	}
	// The removed address is a member in the middle of the list; the new
	// one lies far from every member, so that neither change merges or
	// splits a range.
	const removed, added = "10.0.1.0", "10.100.0.1"
	i := 1 + 128 // 10.0.0.0 + 2*128
	if addrs[i] != removed {
		t.Fatalf("line %d is %s, want %s", i+1, addrs[i], removed)
	}
	dir := t.TempDir()
	oldFile := changeWriteList(t, dir, "old.txt", addrs)
	addrs[i] = added
	newFile := changeWriteList(t, dir, "new.txt", addrs)

	ns := []string{"--netns", srv.Path}
	_, took := changeInstall(t, "table inet ftpnft installed", append(ns, "--source-file", oldFile)...)
	t.Logf("first install of 100,001 addresses: %v", took.Round(time.Millisecond))

	// Traffic before the change: the negative control of the one after it.
	srv.mustIP(t, "route", "add", "10.0.0.0/8", "dev", "eth-cli")
	cli.addAddrs(t, "eth-srv", []string{removed + "/32", added + "/32"})
	if err := controlFrom(t, cli, removed, srv.V4); err != nil {
		t.Fatalf("before the change, control connection from %s (listed): %v", removed, err)
	}
	if err := controlFrom(t, cli, added, srv.V4); err == nil {
		t.Fatalf("before the change, a control connection from %s (not listed) succeeded", added)
	}

	// The dry run lists the two elements and no rule.
	start := time.Now()
	dry := mustFtpnft(t, append([]string{"install", "--dry-run", "--source-file", newFile}, ns...)...)
	t.Logf("dry run: %v:\n%s", time.Since(start).Round(time.Millisecond), dry)
	lines := strings.Split(strings.TrimSuffix(dry, "\n"), "\n")
	var commands []string
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "#") {
			commands = append(commands, l)
		}
	}
	wantCommands := []string{
		"delete element inet ftpnft ftp-sources4 { " + removed + " }",
		"add element inet ftpnft ftp-sources4 { " + added + " }",
	}
	if lines[0] != "# ftpnft install would send changes to table inet ftpnft (1 set element added, 1 set element deleted)" ||
		strings.Join(commands, "\n") != strings.Join(wantCommands, "\n") ||
		!strings.HasPrefix(lines[len(lines)-1], "# and the stamp in chain stamp") {
		t.Fatalf("dry run of a one-line change:\n%s\nwant the count line, then\n%s\nand the stamp comment", dry, strings.Join(wantCommands, "\n"))
	}

	// The change itself, watched by nft monitor.
	mon := changeStartMonitor(t, srv)
	out, took := changeInstall(t, "table inet ftpnft updated (1 set element added, 1 set element deleted)", append(ns, "--source-file", newFile)...)
	t.Logf("one-line change of 100,001 addresses: %v: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
	events := mon.stop(t)
	t.Logf("nft monitor saw:\n%s", strings.Join(events, "\n"))
	var deleted, addedEls, stampRules, other []string
	for _, e := range events {
		switch {
		case strings.HasPrefix(e, "delete element inet ftpnft ftp-sources4 "):
			deleted = append(deleted, e)
		case strings.HasPrefix(e, "add element inet ftpnft ftp-sources4 "):
			addedEls = append(addedEls, e)
		case strings.HasPrefix(e, "add rule inet ftpnft stamp ") || strings.HasPrefix(e, "delete rule inet ftpnft stamp ") ||
			strings.HasPrefix(e, "replace rule inet ftpnft stamp "):
			stampRules = append(stampRules, e)
		default:
			other = append(other, e)
		}
	}
	if len(deleted) != 1 || !strings.Contains(deleted[0], "{ "+removed+" }") ||
		len(addedEls) != 1 || !strings.Contains(addedEls[0], "{ "+added+" }") ||
		len(stampRules) != 2 || !strings.HasPrefix(stampRules[0], "delete rule inet ftpnft stamp handle ") ||
		!strings.HasPrefix(stampRules[1], "add rule inet ftpnft stamp ") || len(other) != 0 {
		t.Fatalf("nft monitor during a one-line change: elements deleted %q, added %q, stamp rules %q, other events %q;\n"+
			"want one element of each naming %s and %s, the stamp rule replaced (deleted and added), nothing else",
			deleted, addedEls, stampRules, other, removed, added)
	}

	// Traffic after the change.
	if err := controlFrom(t, cli, added, srv.V4); err != nil {
		t.Errorf("after the change, control connection from %s (added): %v", added, err)
	}
	if err := controlFrom(t, cli, removed, srv.V4); err == nil {
		t.Errorf("after the change, a control connection from %s (removed) succeeded", removed)
	}
}

// TestChangeFailureLeavesTableIdentical proves that a mid-size change (set
// elements deleted and added, a rule added, a chain's policy changed) that
// the kernel rejects halfway through its batch changes nothing at all: the
// listing of the table, with handles and counters, is byte-identical
// afterwards, and the error names the rejected message. The change is
// spoiled by a helper type the kernel does not know; the same change
// unspoiled is shown (by a dry run) to touch elements, rules and the
// policy, so the batch the kernel threw away really held all of them.
func TestChangeFailureLeavesTableIdentical(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	ctx := context.Background()

	prefixes := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return ps
	}
	cfg := nft.DefaultConfig()
	cfg.Sources = prefixes("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8:f7::/64")
	cfg.MaxConnPerSource = 3
	rs, err := nft.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := nft.Apply(ctx, rs, nft.WithNetNS(srv.Path)); err != nil || !res.Changed || !res.Plan.Create {
		t.Fatalf("first Apply = %+v, %v", res, err)
	}
	// Traffic, so that the counters are not zero.
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)

	// The change: one source network narrowed, one removed, one added;
	// ssh allowed; policy accept.
	changed := cfg
	changed.Sources = prefixes("192.0.2.0/24", "198.51.100.0/25", "10.9.0.0/16", "2001:db8:f7::/64")
	changed.Allow = []nft.Service{{Protocol: "tcp", Port: 22}}
	changed.Policy = nft.PolicyAccept
	flags := []string{"--netns", srv.Path, "--max-conn-per-source", "3", "--allow", "tcp/22", "--policy", "accept"}
	for _, p := range changed.Sources {
		flags = append(flags, "--source", p.String())
	}

	before := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	if counted := changeRules(t, before)["input: ftpnft: established"]; counted.packets == 0 {
		t.Fatalf("counters are zero after the traffic:\n%s", before)
	}

	// What the change does, unspoiled: a dry run sends nothing.
	dry := mustFtpnft(t, append([]string{"install", "--dry-run"}, flags...)...)
	t.Logf("dry run of the valid change:\n%s", dry)
	for _, want := range []string{
		"# ftpnft install would send changes to table inet ftpnft (",
		"\ndelete element inet ftpnft ftp-sources4 { ",
		"\nadd element inet ftpnft ftp-sources4 { ",
		"\nadd rule inet ftpnft input ",
		"tcp dport 22 counter accept comment \"ftpnft: allow tcp/22\"",
		"\nadd chain inet ftpnft input { type filter hook input priority filter; policy accept; }",
	} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run of the change lacks %q", want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if after := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft"); after != before {
		t.Fatalf("the dry run changed the table:\n--- before\n%s\n--- after\n%s", before, after)
	}

	broken, err := nft.Build(changed)
	if err != nil {
		t.Fatal(err)
	}
	broken.Helpers[0].Type = "no-such-helper"
	plan, err := nft.PlanApply(ctx, broken, nft.WithNetNS(srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the spoiled change would send: %s (%d steps)", plan.Counts, len(plan.Steps()))
	_, err = nft.Apply(ctx, broken, nft.WithNetNS(srv.Path))
	after := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	var nerr *nft.Error
	if !errors.As(err, &nerr) || nerr.Op != "install" || !strings.Contains(nerr.Step, "add object "+broken.Helpers[0].Name) {
		t.Fatalf("Apply of the spoiled change = %v, want *nft.Error for install naming add object %s", err, broken.Helpers[0].Name)
	}
	t.Logf("Apply of the spoiled change: %v", err)
	// The rejected message is neither the first nor the last of the batch:
	m := regexp.MustCompile(`batch message (\d+) of (\d+)`).FindStringSubmatch(nerr.Step)
	if m == nil {
		t.Fatalf("the error's step %q does not say where in the batch it is", nerr.Step)
	}
	at, _ := strconv.Atoi(m[1])
	of, _ := strconv.Atoi(m[2])
	// Messages before the rejected one were taken by the kernel and had
	// to be undone; messages after it were never looked at.
	if at < 2 || at >= of {
		t.Errorf("the kernel rejected message %d of %d: not in the middle of the batch", at, of)
	}
	if after != before {
		t.Fatalf("a failed change altered the table:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// The table still works as before the failed change.
	mustFetch(t, cli, PASV, srv.V4, 21, files)
}
