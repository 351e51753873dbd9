//go:build netns

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/nft"
)

// Benchmarks that compare ftpnft with what a user would run instead, on
// the same kernel in the same kind of namespace. Commands are timed as whole
// processes, each started the same way (runIn), so both sides pay the same
// start-up. scripts/bench runs them and prints the ratios;
// docs/BENCHMARKS.md has the method and the results.

// runIn runs argv in h's namespace, discarding its output, and returns how
// long the process lived: from starting it to reaping it. It is started
// from a thread inside the namespace (Host.Do), so it is born there, as a
// user's command is born in the host's namespace, with nothing wrapped
// around it: ip netns exec would add its own start-up (3.3 ms: a mount
// namespace and a remount of /sys), and GNU time its own (about 1 ms), to
// both sides alike.
func runIn(b *testing.B, h *Host, argv ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...) // stdout: /dev/null
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var start time.Time
	if err := h.Do(func() error {
		start = time.Now()
		return cmd.Start()
	}); err != nil {
		b.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	err := cmd.Wait()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return took
}

// maxRSSIn runs argv in h's namespace under GNU time and returns its peak
// resident memory in KiB. (The rusage of a child of this process would
// include this process's own memory: the child shares it until exec.)
func maxRSSIn(b *testing.B, h *Host, argv ...string) int64 {
	b.Helper()
	rss := filepath.Join(b.TempDir(), "maxrss")
	runIn(b, h, append([]string{"/usr/bin/time", "-f", "%M", "-o", rss}, argv...)...)
	out, err := os.ReadFile(rss)
	if err != nil {
		b.Fatal(err)
	}
	var kib int64
	if _, err := fmt.Sscan(string(out), &kib); err != nil {
		b.Fatalf("GNU time wrote %q: %v", out, err)
	}
	return kib
}

// command is one side of a side-by-side benchmark.
type command struct {
	name  string
	argv  []string
	after func() // undoes what the command did, untimed; nil: nothing
}

// sideBySide runs ftpnft and then other, once each per iteration, so that
// drift in the machine's speed falls on both alike: each one timed, then
// again (untimed) under GNU time for its peak memory. It reports each one's
// median time and peak memory, and the ratios ftpnft / other.
func sideBySide(b *testing.B, h *Host, ftpnft, other command) {
	var ms, kib [2][]float64
	undo := func(c command) {
		if c.after != nil {
			c.after()
		}
	}
	for b.Loop() {
		for i, c := range []command{ftpnft, other} {
			ms[i] = append(ms[i], float64(runIn(b, h, c.argv...).Microseconds())/1000)
			b.StopTimer()
			undo(c)
			kib[i] = append(kib[i], float64(maxRSSIn(b, h, c.argv...)))
			undo(c)
			b.StartTimer()
		}
	}
	for i, c := range []command{ftpnft, other} {
		b.ReportMetric(median(ms[i]), "ms-"+c.name)
		b.ReportMetric(median(kib[i]), "KiB-maxrss-"+c.name)
	}
	b.ReportMetric(median(ms[0])/median(ms[1]), "ratio-time")
	b.ReportMetric(median(kib[0])/median(kib[1]), "ratio-maxrss")
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// sourceFile writes an allowlist of n IPv4 networks that do not merge
// (every other /24 from 10.0.0.0) and returns its path.
func sourceFile(b *testing.B, n int) string {
	var s strings.Builder
	for i := range n {
		fmt.Fprintf(&s, "10.%d.%d.0/24\n", i>>7&255, i<<1&255)
	}
	path := filepath.Join(b.TempDir(), "sources.txt")
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkApply: `ftpnft install` against `nft -f` of ftpnft's own render
// output (the identical ruleset), from no table, at the default
// configuration and with a 10,000-network allowlist; and a re-install that
// finds nothing to change, which must commit nothing. The two tools take
// turns within each iteration (sideBySide).
func BenchmarkApply(b *testing.B) {
	h := NewHost(b, "apply")
	for _, n := range []int{0, 10000} {
		args := []string{}
		if n > 0 {
			args = append(args, "--source-file", sourceFile(b, n))
		}
		rendered := filepath.Join(b.TempDir(), "ruleset.nft")
		out, err := exec.Command(ftpnftBin, append([]string{"render"}, args...)...).Output()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(rendered, out, 0o644); err != nil {
			b.Fatal(err)
		}
		install := append([]string{ftpnftBin, "install"}, args...)

		b.Run(fmt.Sprintf("install/sources=%d", n), func(b *testing.B) {
			drop := func() { h.MustExec(b, "nft", "delete", "table", "inet", nft.DefaultTable) }
			sideBySide(b, h, command{"ftpnft", install, drop}, command{"nft-f", []string{"nft", "-f", rendered}, drop})
		})
		b.Run(fmt.Sprintf("ftpnft-noop/sources=%d", n), func(b *testing.B) {
			runIn(b, h, install...)
			before, err := nft.Generation(context.Background(), nft.WithNetNS(h.Path))
			if err != nil {
				b.Fatal(err)
			}
			var ms []float64
			for b.Loop() {
				ms = append(ms, float64(runIn(b, h, install...).Microseconds())/1000)
			}
			b.StopTimer()
			kib := maxRSSIn(b, h, install...)
			after, err := nft.Generation(context.Background(), nft.WithNetNS(h.Path))
			if err != nil {
				b.Fatal(err)
			}
			if after != before {
				b.Fatalf("%d re-installs with nothing to change committed %d batches", b.N+1, after-before)
			}
			b.ReportMetric(median(ms), "ms-ftpnft")
			b.ReportMetric(float64(kib), "KiB-maxrss-ftpnft")
			h.MustExec(b, ftpnftBin, "uninstall")
		})
	}
}

// pasvServer answers every connection to port on h like an FTP server that
// only ever enters passive mode: 220 on connect, and a distinct "227
// Entering Passive Mode" for each PASV. The helper reads those replies and
// creates one expectation per control connection (it allows one at a
// time: a new PASV replaces the last expectation). The ports differ across
// all connections, as a real server's would: the kernel refuses an
// expectation equal to another master's, and the helper then drops the
// reply.
func pasvServer(b *testing.B, h *Host, port int) {
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", h.V4, port))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	a := h.V4.As4()
	var next atomic.Uint32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "220 ready\r\n")
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if !strings.HasPrefix(strings.ToUpper(line), "PASV") {
						fmt.Fprintf(c, "502 no\r\n")
						continue
					}
					p := 1024 + next.Add(1)%60000
					fmt.Fprintf(c, "227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)\r\n", a[0], a[1], a[2], a[3], p>>8, p&255)
				}
			}()
		}
	}()
}

// controlConn is a client's FTP control connection to a pasvServer.
type controlConn struct {
	c net.Conn
	r *bufio.Reader
}

// dialControl opens n control connections from h to addr and reads each
// greeting.
func dialControl(b *testing.B, h *Host, addr netip.AddrPort, n int) []*controlConn {
	conns := make([]*controlConn, 0, n)
	if err := h.Do(func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, &controlConn{c: c, r: bufio.NewReader(c)})
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, cc := range conns {
			cc.c.Close()
		}
	})
	for _, cc := range conns {
		if line, err := cc.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220") {
			b.Fatalf("greeting %q, %v", line, err)
		}
	}
	return conns
}

// pasv sends PASV on every connection, all at once, and waits for the
// replies: each is one new expectation in the server's namespace.
func pasv(b *testing.B, conns []*controlConn) {
	for _, cc := range conns {
		if _, err := io.WriteString(cc.c, "PASV\r\n"); err != nil {
			b.Fatal(err)
		}
	}
	for i, cc := range conns {
		cc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := cc.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "227") {
			b.Fatalf("PASV reply %d of %d: %q, %v", i+1, len(conns), line, err)
		}
	}
}

// loadPair is a server namespace with ftpnft installed and a pasvServer on
// port 21, and a client namespace.
func loadPair(b *testing.B) (srv, cli *Host) {
	srv, cli = NewPair(b)
	srv.MustExec(b, ftpnftBin, "install")
	pasvServer(b, srv, 21)
	return srv, cli
}

// waitExpectations polls until srv holds n expectations.
func waitExpectations(b *testing.B, srv *Host, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		xs, err := conntrack.List(context.Background(), conntrack.WithNetNS(srv.Path))
		if err != nil {
			b.Fatal(err)
		}
		if len(xs) == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d expectations, want %d", len(xs), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkList: `ftpnft expectations --json` against `conntrack -L
// expect` with 1,000 to 4,000 live expectations (nf_conntrack_expect_max is
// 4096 and read-only inside a namespace), taking turns within each
// iteration (sideBySide); and the library's List with its memory per
// expectation.
func BenchmarkList(b *testing.B) {
	srv, cli := loadPair(b)
	var conns []*controlConn
	for _, n := range []int{1000, 2000, 4000} {
		more := dialControl(b, cli, netip.AddrPortFrom(srv.V4, 21), n-len(conns))
		pasv(b, more)
		conns = append(conns, more...)
		waitExpectations(b, srv, n)
		var listed []conntrack.Expectation
		if err := json.Unmarshal([]byte(srv.MustExec(b, ftpnftBin, "expectations", "--json")), &listed); err != nil || len(listed) != n {
			b.Fatalf("ftpnft expectations --json listed %d expectations (%v), want %d", len(listed), err, n)
		}

		b.Run(fmt.Sprintf("list/expectations=%d", n), func(b *testing.B) {
			sideBySide(b, srv, command{"ftpnft", []string{ftpnftBin, "expectations", "--json"}, nil},
				command{"conntrack", []string{"conntrack", "-L", "expect"}, nil})
		})
		b.Run(fmt.Sprintf("library/expectations=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if xs, err := conntrack.List(context.Background(), conntrack.WithNetNS(srv.Path)); err != nil || len(xs) != n {
					b.Fatalf("List = %d expectations, %v; want %d", len(xs), err, n)
				}
			}
		})
	}
}

// BenchmarkWatch: bursts of new expectations (500 control connections send
// PASV at once, per iteration) while `ftpnft expectations --watch --json`
// runs. Every expectation must be reported as "new", or the loss must be
// reported ("lost" events); a silent loss fails the benchmark. It reports
// the events per second the watch kept up with.
func BenchmarkWatch(b *testing.B) {
	srv, cli := loadPair(b)

	// The pipe is closed after the watch is killed (cleanups run last
	// first), which ends the reading below.
	stdout, w := io.Pipe()
	b.Cleanup(func() { w.Close() })
	_, _, stderr := startWatch(b, srv, w)
	var mu sync.Mutex
	var news, lost int
	var last time.Time
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			line := s.Text()
			mu.Lock()
			switch {
			case strings.Contains(line, `"event":"new"`):
				news++
				last = time.Now()
			case strings.Contains(line, `"event":"lost"`):
				lost++
			}
			mu.Unlock()
		}
	}()
	// Only now: with nf_conntrack_events at its default (2), the kernel
	// reports events of connections that began while someone listened.
	conns := dialControl(b, cli, netip.AddrPortFrom(srv.V4, 21), 500)

	start := time.Now()
	for b.Loop() {
		pasv(b, conns)
	}
	sent := b.N * len(conns)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got, gone, end := news, lost, last
		mu.Unlock()
		if got >= sent || time.Now().After(deadline) {
			b.ReportMetric(float64(got)/end.Sub(start).Seconds(), "events/s")
			b.ReportMetric(float64(gone), "lost-reports")
			b.ReportMetric(float64(sent-got), "missing")
			if got < sent && gone == 0 {
				b.Fatalf("%d of %d new expectations were not reported, and no loss was reported; watch said:\n%s", sent-got, sent, stderr())
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkTransfer: passive downloads of 256 MiB from vsftpd with curl,
// through no ruleset, through ftpnft's default ruleset, and through one with
// a 10,000-network allowlist; and, as the floor of any stateful firewall,
// through a table that only turns connection tracking on (one rule,
// established accept). A turn downloads once in each state, in an order
// that rotates, so that drift in the machine's speed
// does not favour one of them; each iteration takes four turns. The
// throughput is curl's own measurement; the medians are reported, and for
// each ruleset the median of its turns' ratios to no ruleset. (Single
// transfers on this VM vary by 15 to 20%: the ratio needs many turns.)
func BenchmarkTransfer(b *testing.B) {
	const size = 256 << 20
	const turnsPerIteration = 4
	srv, cli := NewPair(b)
	ftp := StartVsftpd(b, srv, 21, map[string][]byte{"big.bin": nil})
	// A sparse file: the disk plays no part in the measurement.
	if err := os.Truncate(filepath.Join(ftp.Root, "big.bin"), size); err != nil {
		b.Fatal(err)
	}
	sources := sourceFile(b, 10000)
	install := func(args ...string) func() {
		return func() { srv.MustExec(b, ftpnftBin, append([]string{"install"}, args...)...) }
	}
	// A trace of other FTP traffic (port 2121) running beside the
	// transfer: what doctor --trace costs the traffic it does not follow.
	var tracing *exec.Cmd
	traceOther := func() {
		install()()
		tracing = exec.Command(ftpnftBin, "doctor", "--trace", "--ports", "2121", "--netns", srv.Path)
		// A pipe of our own, not StderrPipe: it is read while Wait runs.
		errPipe, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		tracing.Stderr = w
		if err := tracing.Start(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		line, err := bufio.NewReader(errPipe).ReadString('\n')
		if err != nil || !strings.Contains(line, "tracing FTP sessions") {
			b.Fatalf("trace did not start: %q, %v", line, err)
		}
		go func() { io.Copy(io.Discard, errPipe); errPipe.Close() }()
	}
	stopTrace := func() {
		if tracing != nil {
			tracing.Process.Signal(syscall.SIGINT)
			if err := tracing.Wait(); err != nil {
				b.Fatalf("trace: %v", err)
			}
			tracing = nil
		}
	}
	b.Cleanup(func() {
		if tracing != nil {
			tracing.Process.Kill()
		}
	})
	states := []struct {
		name string
		set  func() // from an empty ruleset
	}{
		{"none", func() {}},
		{"conntrack-only", func() {
			srv.NftApply(b, "table inet conntrack-only { chain input { type filter hook input priority filter; ct state established accept; }; }")
		}},
		{"ruleset", install()},
		{"allowlist-10000", install("--source", cli.V4.String(), "--source-file", sources)},
		{"ruleset-trace-other", traceOther},
	}
	download := func(state string) float64 {
		out := cli.MustExec(b, "curl", "-q", "--silent", "--show-error", "--ftp-pasv", "--disable-epsv",
			"-o", "/dev/null", "-w", "%{speed_download} %{size_download}", URL(srv.V4, 21, "/big.bin"))
		var speed float64
		var got int64
		if _, err := fmt.Sscan(out, &speed, &got); err != nil || got != size {
			b.Fatalf("curl through %s: %q, %v", state, out, err)
		}
		return speed
	}
	download("none") // warm-up, not counted: the first transfer is the slowest
	speeds := make([][]float64, len(states))
	turn := 0
	for b.Loop() {
		for range turnsPerIteration {
			for k := range states {
				i := (turn + k) % len(states)
				b.StopTimer()
				srv.NftApply(b, "flush ruleset") // this test's own namespace
				states[i].set()
				b.StartTimer()
				speeds[i] = append(speeds[i], download(states[i].name))
				b.StopTimer()
				stopTrace()
				b.StartTimer()
			}
			turn++
		}
	}
	b.ReportMetric(median(speeds[0])/(1<<20), "MiB/s-none")
	for i, st := range states[1:] {
		// The ratio is the median of each turn's ratio: a turn's
		// transfers follow each other, so the machine's drift between
		// turns cancels out.
		ratios := make([]float64, len(speeds[0]))
		for t, none := range speeds[0] {
			ratios[t] = speeds[i+1][t] / none
		}
		b.ReportMetric(median(speeds[i+1])/(1<<20), "MiB/s-"+st.name)
		b.ReportMetric(median(ratios), "ratio-"+st.name)
	}
	b.ReportMetric(float64(turn), "turns")
}

// BenchmarkDaemonRepair: how soon `ftpnft daemon` puts its table back after
// `nft flush ruleset` in its namespace. Each iteration runs nft (started
// inside the namespace, runIn) and waits for the daemon's repair. The time
// is from the flush's commit to the daemon's commit, both as the kernel
// announces them to a listener of the benchmark's own (nft.WatchCommits):
// no polling, and neither nft's start-up nor its exit counted. The
// daemon's own time for the apply (took= in its log) is reported beside
// it. The daemon repairs at once only 30 times within 10 s and then backs
// off, so the flushes are paced (untimed) to at most 28 within 10.3 s; the
// benchmark fails if the daemon backed off all the same.
func BenchmarkDaemonRepair(b *testing.B) {
	h := NewHost(b, "repair")
	d := daemonStart(b, h)
	d.waitReady(b)

	type announced struct {
		c  nft.Commit
		at time.Time
	}
	commits := make(chan announced, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	listening := make(chan struct{})
	go func() {
		watchDone <- nft.WatchCommits(ctx, nft.DefaultTable, func(c nft.Commit) {
			if c.Start {
				close(listening)
				return
			}
			commits <- announced{c, time.Now()}
		}, nft.WithNetNS(h.Path))
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-watchDone; err != nil {
			b.Error(err)
		}
	})
	select {
	case <-listening:
	case err := <-watchDone:
		b.Fatalf("watch: %v", err)
	}
	// The kernel names the committing thread, not the process: a commit
	// is the daemon's if its pid is one of the daemon's threads.
	byDaemon := func(c nft.Commit) bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", d.pid, c.PID))
		return c.Process == "ftpnft" && err == nil
	}

	const (
		window   = 10300 * time.Millisecond
		perBurst = 28
	)
	var recent []time.Time // repairs within the last window
	var ms []float64
	var extra, gaps int
	for b.Loop() {
		b.StopTimer()
		now := time.Now()
		recent = slices.DeleteFunc(recent, func(t time.Time) bool { return now.Sub(t) > window })
		if len(recent) >= perBurst {
			time.Sleep(time.Until(recent[0].Add(window)))
		}
		for drained := false; !drained; {
			select {
			case <-commits:
				extra++ // anything after the last repair
			default:
				drained = true
			}
		}
		b.StartTimer()

		runIn(b, h, "nft", "flush", "ruleset")
		var flush announced
		timeout := time.After(5 * time.Second)
		for repaired := false; !repaired; {
			select {
			case a := <-commits:
				switch {
				case flush.at.IsZero() && a.c.Process == "nft" && a.c.Touched:
					flush = a
				case !flush.at.IsZero() && byDaemon(a.c):
					ms = append(ms, float64(a.at.Sub(flush.at).Microseconds())/1000)
					if a.c.Gen != flush.c.Gen+1 {
						gaps++
					}
					recent = append(recent, a.at)
					repaired = true
				default:
					extra++
				}
			case <-timeout:
				b.Fatalf("no repair within 5 s of the flush (flush seen: %t; daemon exited: %t, %v)\n%s",
					!flush.at.IsZero(), d.exited(), d.err, d.logText())
			}
		}
	}
	b.StopTimer()
	if n := d.count("backing off"); n > 0 {
		b.Fatalf("the daemon backed off %d times: the pacing did not keep it in its burst\n%s", n, d.logText())
	}
	log, _ := d.snapshot()
	var took []float64
	for _, l := range daemonMatching(log, `msg="table applied"`, "reason=drift") {
		dur, err := time.ParseDuration(daemonAttr(l.text, "took"))
		if err != nil {
			b.Fatalf("took of %s: %v", l.text, err)
		}
		took = append(took, float64(dur.Microseconds())/1000)
	}
	if len(took) != len(ms) {
		b.Fatalf("%d repairs logged for %d flushes", len(took), len(ms))
	}
	b.ReportMetric(median(ms), "ms-median")
	b.ReportMetric(daemonPercentile(ms, 99), "ms-p99")
	b.ReportMetric(slices.Max(ms), "ms-max")
	b.ReportMetric(median(took), "ms-apply-median")
	b.ReportMetric(daemonPercentile(took, 99), "ms-apply-p99")
	b.ReportMetric(float64(extra), "other-commits")
	b.ReportMetric(float64(gaps), "commits-between")
}

// daemonPercentile returns the p-th percentile of xs (nearest rank: the
// smallest value at least p% of xs are at most).
func daemonPercentile(xs []float64, p int) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	i := (p*len(xs)+99)/100 - 1
	return xs[max(i, 0)]
}

// BenchmarkBans: what a ban costs, each command timed as a whole process
// started inside the namespace (runIn), against ftpnft's default table.
// The addresses are distinct /32s, every other address from a base, so
// that no two bans merge. Sub-benchmarks (run them apart, each with its own
// -benchtime; see docs/BENCHMARKS.md):
//
//   - single: one `ftpnft ban ADDR` per iteration, the bans adding up from
//     none; the median, the medians of the first and the last tenth, and
//     the median times 100,000 (100,000 bans one command each).
//   - bulk-100000: one `ftpnft ban` with 100,000 addresses per iteration,
//     from no bans (the table is installed again, untimed, in between).
//   - single-beside-100000: one `ftpnft ban ADDR` per iteration beside
//     100,000 bans (made untimed with one command first).
//   - single-beside-blocklist-1000000: the same beside a blocklist of
//     1,000,000 networks (install --block-file, untimed) and no other
//     ban. A ban reads only the ban sets, so the blocklist should not
//     count.
func BenchmarkBans(b *testing.B) {
	h := NewHost(b, "bans")
	reinstall := func(args ...string) {
		runIn(b, h, ftpnftBin, "uninstall")
		runIn(b, h, append([]string{ftpnftBin, "install"}, args...)...)
	}
	addr := func(base, i int) string {
		a := base + 2*i
		return fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&255, a>>8&255, a&255)
	}
	countBans := func(want int) {
		bans, err := nft.ReadBans(context.Background(), nft.DefaultTable, nft.WithNetNS(h.Path))
		if err != nil {
			b.Fatal(err)
		}
		if len(bans) != want {
			b.Fatalf("%d bans, want %d", len(bans), want)
		}
	}
	// single bans one address per iteration, from base, beside before
	// bans, and reports the times; it returns the median.
	single := func(b *testing.B, base, before int) float64 {
		var ms []float64
		i := 0
		for b.Loop() {
			ms = append(ms, float64(runIn(b, h, ftpnftBin, "ban", addr(base, i)).Microseconds())/1000)
			i++
		}
		b.StopTimer()
		countBans(before + i)
		b.ReportMetric(median(ms), "ms-median")
		if tenth := len(ms) / 10; tenth > 0 {
			b.ReportMetric(median(ms[:tenth]), "ms-first-tenth")
			b.ReportMetric(median(ms[len(ms)-tenth:]), "ms-last-tenth")
		}
		b.ReportMetric(float64(maxRSSIn(b, h, ftpnftBin, "ban", addr(base, i))), "KiB-maxrss")
		return median(ms)
	}

	const bulk = 100_000
	// 100,000 addresses on one command line are about 2 MB of strings and
	// pointers, ARG_MAX at the usual 8 MiB stack limit (ARG_MAX is a
	// quarter of it, at most 6 MiB): raise this process's soft limit, which
	// its children inherit, for the benchmark.
	var stack syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &stack); err != nil {
		b.Fatal(err)
	}
	if stack.Cur < 32<<20 && stack.Max >= 32<<20 { // RLIM_INFINITY is the largest uint64
		raised := stack
		raised.Cur = 32 << 20
		if err := syscall.Setrlimit(syscall.RLIMIT_STACK, &raised); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_STACK, &stack) })
	}
	many := []string{ftpnftBin, "ban"}
	for i := range bulk {
		many = append(many, addr(10<<24, i))
	}

	b.Run("single", func(b *testing.B) {
		reinstall()
		m := single(b, 10<<24, 0)
		b.ReportMetric(m*bulk/1000, "s-for-100000")
	})
	b.Run(fmt.Sprintf("bulk-%d", bulk), func(b *testing.B) {
		var ms []float64
		for b.Loop() {
			b.StopTimer()
			reinstall()
			b.StartTimer()
			ms = append(ms, float64(runIn(b, h, many...).Microseconds())/1000)
		}
		b.StopTimer()
		countBans(bulk)
		b.ReportMetric(median(ms), "ms-median")
		reinstall()
		b.ReportMetric(float64(maxRSSIn(b, h, many...)), "KiB-maxrss")
	})
	b.Run(fmt.Sprintf("single-beside-%d", bulk), func(b *testing.B) {
		reinstall()
		runIn(b, h, many...)
		single(b, 11<<24, bulk)
	})
	b.Run("single-beside-blocklist-1000000", func(b *testing.B) {
		var list strings.Builder
		for i := range 1_000_000 {
			list.WriteString(addr(20<<24, i) + "\n")
		}
		file := filepath.Join(b.TempDir(), "block.txt")
		if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		reinstall("--block-file", file)
		single(b, 11<<24, 0)
	})
}

// BenchmarkScrape: one GET of /metrics from `ftpnft daemon
// --metrics-listen`, timed from the connect to the last byte (timedScrape:
// from this process, inside the namespace), with no expectation, with
// 4,000 held open (a pasvServer, as BenchmarkList), and with those and a
// 1,000,000-network --source-file allowlist installed. A scrape reads the
// rule counters, the expectations, conntrack's counts and the bans from
// the kernel, but the configured sets' sizes from the configuration: the
// million networks must cost it nothing. It reports the median, the 99th
// percentile and the worst scrape, the daemon's CPU per scrape and its
// resident memory.
func BenchmarkScrape(b *testing.B) {
	srv, cli := loadPair(b)
	var list strings.Builder
	list.WriteString(cli.V4.String() + "\n")
	for i := range 1_000_000 {
		a := 10<<24 + 2*i // every other address: no two merge into a range
		fmt.Fprintf(&list, "%d.%d.%d.%d\n", a>>24, a>>16&255, a>>8&255, a&255)
	}
	million := filepath.Join(b.TempDir(), "million.txt")
	if err := os.WriteFile(million, []byte(list.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", metricsPort)

	for _, c := range []struct {
		expectations int
		sources      int
		args         []string
	}{
		{0, 0, nil},
		{4000, 0, nil},
		{4000, 1_000_001, []string{"--source-file", million}},
	} {
		if c.expectations > 0 && len(heldExpectations(b, srv)) == 0 {
			pasv(b, dialControl(b, cli, netip.AddrPortFrom(srv.V4, 21), c.expectations))
			waitExpectations(b, srv, c.expectations)
		}
		b.Run(fmt.Sprintf("expectations=%d/sources=%d", c.expectations, c.sources), func(b *testing.B) {
			start := time.Now()
			d := startMetricsDaemon(b, srv, append([]string{"--metrics-listen", listen}, c.args...)...)
			d.waitHealthz(b, 200, 2*time.Minute)
			b.Logf("daemon serving /healthz 200 after %v", time.Since(start).Round(time.Millisecond))
			_, body := d.timedScrape(b)
			samples := parseMetrics(b, string(body))
			if n := mustMetric(b, samples, "ftpnft_expectations", "helper", "ftp"); n != float64(c.expectations) {
				b.Fatalf("ftpnft_expectations{helper=ftp} = %v, want %d", n, c.expectations)
			}
			if c.sources > 0 {
				if n := mustMetric(b, samples, "ftpnft_set_elements", "set", "ftp-sources4"); n != float64(c.sources) {
					b.Fatalf("ftpnft_set_elements{set=ftp-sources4} = %v, want %d", n, c.sources)
				}
			}
			var ms []float64
			cpu := d.cpuTime(b)
			for b.Loop() {
				took, _ := d.timedScrape(b)
				ms = append(ms, float64(took.Microseconds())/1000)
			}
			cpu = d.cpuTime(b) - cpu
			slices.Sort(ms)
			b.ReportMetric(median(ms), "ms-median")
			b.ReportMetric(ms[max((99*len(ms)+99)/100-1, 0)], "ms-p99")
			b.ReportMetric(ms[len(ms)-1], "ms-max")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(ms)), "ms-cpu/scrape")
			b.ReportMetric(float64(len(body)), "bytes")
			b.ReportMetric(float64(d.rss(b)), "KiB-rss")
			for _, line := range strings.Split(d.p.readOutput(), "\n") {
				if strings.Contains(line, "table applied") {
					b.Log(line) // the apply of the allowlist: how long it took
				}
			}
		})
	}
}

// heldExpectations returns the expectations srv holds now.
func heldExpectations(b *testing.B, srv *Host) []conntrack.Expectation {
	xs, err := conntrack.List(context.Background(), conntrack.WithNetNS(srv.Path))
	if err != nil {
		b.Fatal(err)
	}
	return xs
}
