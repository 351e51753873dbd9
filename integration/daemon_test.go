//go:build netns

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft"
)

// Tests of `ftpnft daemon`: it applies the configuration, tells systemd
// (sd_notify) when it is ready, and keeps the table applied when other
// programs flush, reload or edit the ruleset, without fighting a writer
// that never stops. The daemon runs as a child of the test, in the root
// namespace, and reaches the test's namespace through --netns, as a
// systemd unit would with --netns NAME.

const (
	daemonStartTimeout = 10 * time.Second // READY=1 after start
	daemonRepairBound  = time.Second      // the "within a second"
	daemonPoll         = 10 * time.Millisecond
)

// daemonLine is a line of the daemon's log, or an sd_notify datagram, with
// the time the test received it.
type daemonLine struct {
	text string
	at   time.Time
}

// daemonProc is a running `ftpnft daemon`: its log lines (stderr) and the
// datagrams it sent to its own notify socket, as they arrive.
type daemonProc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed when Wait has returned
	err  error         // Wait's result, valid once done is closed

	mu      sync.Mutex
	log     []daemonLine
	notes   []daemonLine
	changed chan struct{} // closed and replaced whenever a line or note arrives
}

// daemonStart starts `ftpnft daemon --netns ns.Path args...` with a notify
// socket of the test's own in NOTIFY_SOCKET, and returns at once (see
// waitReady). In cleanup the daemon is killed (SIGKILL) if it still runs,
// and its log is shown if the test failed.
func daemonStart(t testing.TB, ns *Host, args ...string) *daemonProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed in cleanup
			}
			d.add(&d.notes, string(buf[:n]))
		}
	}()

	argv := append([]string{"daemon", "--netns", ns.Path}, args...)
	d.cmd = exec.Command(ftpnftBin, argv...)
	d.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SSH_CONNECTION=") || strings.HasPrefix(kv, "NOTIFY_SOCKET=")
	}), "SSH_CONNECTION=", "NOTIFY_SOCKET="+sock)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			d.add(&d.log, s.Text())
		}
		d.err = d.cmd.Wait()
		close(d.done)
		d.add(nil, "")
	}()
	t.Cleanup(func() {
		if !d.exited() {
			d.cmd.Process.Kill()
		}
		select {
		case <-d.done:
		case <-time.After(killTimeout):
			t.Errorf("ftpnft daemon (pid %d) still running %v after SIGKILL", d.pid, killTimeout)
		}
		conn.Close()
		if t.Failed() {
			t.Logf("log of ftpnft %s:\n%s", strings.Join(argv, " "), d.logText())
		}
	})
	return d
}

// add appends text to list (nil: only wake the waiters).
func (d *daemonProc) add(list *[]daemonLine, text string) {
	d.mu.Lock()
	if list != nil {
		*list = append(*list, daemonLine{text, time.Now()})
	}
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// snapshot returns copies of the log lines and notes received so far.
func (d *daemonProc) snapshot() (log, notes []daemonLine) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log), slices.Clone(d.notes)
}

func (d *daemonProc) logText() string {
	log, _ := d.snapshot()
	var b strings.Builder
	for _, l := range log {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// waitFor waits until cond holds for the log lines and notes received so
// far, and reports whether it did within timeout (or before the daemon
// exited).
func (d *daemonProc) waitFor(timeout time.Duration, cond func(log, notes []daemonLine) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		ok := cond(d.log, d.notes)
		changed := d.changed
		d.mu.Unlock()
		if ok {
			return true
		}
		if d.exited() {
			return false
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// waitNote waits for the first note after the first skip ones that
// contains want (a line such as "READY=1"), and returns it with its index.
func (d *daemonProc) waitNote(t testing.TB, skip int, want string, timeout time.Duration) (daemonLine, int) {
	t.Helper()
	var got daemonLine
	idx := -1
	ok := d.waitFor(timeout, func(_, notes []daemonLine) bool {
		for i := skip; i < len(notes); i++ {
			if slices.Contains(strings.Split(notes[i].text, "\n"), want) {
				got, idx = notes[i], i
				return true
			}
		}
		return false
	})
	if !ok {
		_, notes := d.snapshot()
		t.Fatalf("no %s from the daemon within %v (exited: %t, %v); notes: %q\nlog:\n%s",
			want, timeout, d.exited(), d.err, daemonTexts(notes), d.logText())
	}
	return got, idx
}

// waitReady waits for the daemon's first READY=1 and returns that note.
func (d *daemonProc) waitReady(t testing.TB) daemonLine {
	t.Helper()
	note, _ := d.waitNote(t, 0, "READY=1", daemonStartTimeout)
	return note
}

// waitLog waits until at least n log lines contain all of parts, and
// returns the n-th.
func (d *daemonProc) waitLog(t testing.TB, n int, timeout time.Duration, parts ...string) daemonLine {
	t.Helper()
	var got daemonLine
	if !d.waitFor(timeout, func(log, _ []daemonLine) bool {
		found := daemonMatching(log, parts...)
		if len(found) >= n {
			got = found[n-1]
			return true
		}
		return false
	}) {
		t.Fatalf("no log line (%d wanted) with %q within %v (exited: %t, %v); log:\n%s",
			n, parts, timeout, d.exited(), d.err, d.logText())
	}
	return got
}

// count returns how many log lines contain all of parts.
func (d *daemonProc) count(parts ...string) int {
	log, _ := d.snapshot()
	return len(daemonMatching(log, parts...))
}

// cpuTicks returns the daemon's user and system CPU time so far, in clock
// ticks (utime + stime of /proc/PID/stat; 100 a second).
func (d *daemonProc) cpuTicks(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	// "pid (comm) state ppid ...": field n (from 1) after the comm is f[n-3].
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if i < 0 || err1 != nil || err2 != nil {
		t.Fatalf("cannot read utime and stime from %q", b)
	}
	return utime + stime
}

// signal sends sig to the daemon.
func (d *daemonProc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to the daemon: %v", sig, err)
	}
}

// waitExit waits for the daemon to end and returns Wait's result.
func (d *daemonProc) waitExit(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-d.done:
		return d.err
	case <-time.After(timeout):
		t.Fatalf("the daemon did not exit within %v\n%s", timeout, d.logText())
		return nil
	}
}

// daemonMatching returns the lines that contain all of parts.
func daemonMatching(lines []daemonLine, parts ...string) []daemonLine {
	var out []daemonLine
	for _, l := range lines {
		if daemonHasAll(l.text, parts...) {
			out = append(out, l)
		}
	}
	return out
}

func daemonHasAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func daemonTexts(lines []daemonLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.text)
	}
	return out
}

// daemonAttr returns the value of key in a log line of slog's text
// handler (key=value or key="quoted value"), unquoted; "" if absent.
func daemonAttr(line, key string) string {
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S*)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if v, err := strconv.Unquote(m[1]); err == nil {
		return v
	}
	return m[1]
}

// daemonStatus runs `ftpnft status --netns ns.Path flags...` and returns
// its exit code and output.
func daemonStatus(t testing.TB, ns *Host, flags ...string) (int, string) {
	t.Helper()
	code, stdout, stderr := ftpnft(t, append([]string{"status", "--netns", ns.Path}, flags...)...)
	return code, stdout + stderr
}

// daemonWaitMatches polls `ftpnft status` with flags until it exits 0
// (the table is ftpnft's, unchanged, and matches flags), and returns how
// long that took. It fails the test if that takes longer than within.
func daemonWaitMatches(t testing.TB, ns *Host, within time.Duration, flags ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, out := daemonStatus(t, ns, flags...)
		took := time.Since(start)
		if code == 0 {
			return took
		}
		if took > within {
			t.Fatalf("ftpnft status %q does not match %v after the change (exit %d):\n%s\nruleset:\n%s",
				flags, within, code, out, ns.NftList(t))
		}
		time.Sleep(daemonPoll)
	}
}

// daemonTableListing returns `nft -a list table FAMILY NAME` in ns.
func daemonTableListing(t testing.TB, ns *Host, family, name string) string {
	t.Helper()
	return ns.MustExec(t, "nft", "-a", "list", "table", family, name)
}

// daemonRuleHandle returns the handle of the rule of chain inet ftpnft
// CHAIN whose line contains comment.
func daemonRuleHandle(t testing.TB, ns *Host, chain, comment string) string {
	t.Helper()
	listing := ns.MustExec(t, "nft", "-a", "list", "chain", "inet", "ftpnft", chain)
	for _, line := range strings.Split(listing, "\n") {
		if strings.Contains(line, comment) {
			if _, h, ok := strings.Cut(line, "# handle "); ok {
				return strings.TrimSpace(h)
			}
		}
	}
	t.Fatalf("no rule with %q in chain %s:\n%s", comment, chain, listing)
	return ""
}

// daemonGeneration returns the ruleset generation of ns: it grows by one
// with every batch committed.
func daemonGeneration(t testing.TB, ns *Host) uint32 {
	t.Helper()
	gen, err := nft.Generation(context.Background(), nft.WithNetNS(ns.Path))
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// daemonWriteFile writes content to name in dir and returns the path.
func daemonWriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemonNoTable fails the test if ns holds table inet ftpnft.
func daemonNoTable(t testing.TB, ns *Host) {
	t.Helper()
	if out, _, err := ns.Exec(t, "nft", "list", "table", "inet", "ftpnft"); err == nil {
		t.Fatalf("table inet ftpnft is there:\n%s", out)
	}
}

// TestDaemonReadyAfterApply proves that the daemon tells systemd it is
// ready only once the table is in place: at the moment READY=1 arrives on
// the notify socket, the table exists and `ftpnft status` with the
// daemon's flags exits 0, and the same datagram carries a STATUS= line.
// Status with other flags exits 1, so the match is not vacuous.
func TestDaemonReadyAfterApply(t *testing.T) {
	RequireRoot(t)
	ns := NewHost(t, "ready")
	flags := []string{"--ports", "21,2121", "--allow", "tcp/22"}
	start := time.Now()
	d := daemonStart(t, ns, flags...)
	note := d.waitReady(t)
	// Right after READY=1: nothing in between but these two commands.
	listing, _, listErr := ns.Exec(t, "nft", "list", "table", "inet", "ftpnft")
	code, out := daemonStatus(t, ns, flags...)
	t.Logf("READY=1 %v after start; datagram %q", note.at.Sub(start).Round(time.Millisecond), note.text)
	if listErr != nil {
		t.Fatalf("READY=1 was sent, but the table is not there: %v", listErr)
	}
	if code != 0 || !strings.Contains(out, "matches") {
		t.Fatalf("READY=1 was sent, but status with the daemon's flags: exit %d\n%s", code, out)
	}
	if !strings.Contains(listing, "tcp dport 2121") || !strings.Contains(listing, "tcp dport 22 ") {
		t.Fatalf("the table lacks the daemon's flags:\n%s", listing)
	}
	status := ""
	for _, line := range strings.Split(note.text, "\n") {
		if s, ok := strings.CutPrefix(line, "STATUS="); ok {
			status = s
		}
	}
	if status == "" {
		t.Fatalf("READY=1 came without a STATUS= line: %q", note.text)
	}
	if l := d.waitLog(t, 1, time.Second, `msg="table applied"`, "reason=start"); daemonAttr(l.text, "took") == "" {
		t.Errorf("the start's log line has no took=: %s", l.text)
	}
	// Negative control: the comparison does tell configurations apart.
	if code, out := daemonStatus(t, ns, "--ports", "21"); code != 1 || !strings.Contains(out, "differs") {
		t.Fatalf("status with other flags than the daemon's: exit %d, want 1\n%s", code, out)
	}
}

// TestDaemonKeepsTableApplied proves that what undoes ftpnft's table in
// everyday operation is undone by the daemon within a second, and that FTP
// works afterwards: `nft flush ruleset` once and twenty times in a row, an
// nftables.service-style reload of a file that begins with `flush
// ruleset` (whose own table is left exactly as loaded), one of ftpnft's
// rules deleted by hand, and a real firewalld's reload (whose table stays
// as firewalld made it). The negative control stops the daemon first: a
// flush then leaves no table of ftpnft's, and a reload of a strict
// nftables.conf (policy drop, related accepted) leaves passive FTP
// failing, where with the daemon it worked. (After a bare flush nothing
// filters at all, so FTP failing could not be shown with a flush alone.)
func TestDaemonKeepsTableApplied(t *testing.T) {
	RequireRoot(t)
	files := testFiles(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, files)
	d := daemonStart(t, srv)
	d.waitReady(t)
	dir := t.TempDir()

	// `nft flush ruleset` removes every table; the daemon puts its own
	// back, says who removed it, and passive FTP works over IPv4 and IPv6.
	t.Run("flush-once", func(t *testing.T) {
		srv.MustExec(t, "nft", "flush", "ruleset")
		took := daemonWaitMatches(t, srv, daemonRepairBound)
		l := d.waitLog(t, 1, time.Second, `msg="table applied"`, "reason=drift", "writer=nft")
		t.Logf("status matched %v after the flush returned; daemon: took=%s writer_pid=%s changes=%q",
			took.Round(time.Millisecond), daemonAttr(l.text, "took"), daemonAttr(l.text, "writer_pid"), daemonAttr(l.text, "changes"))
		if pid, err := strconv.Atoi(daemonAttr(l.text, "writer_pid")); err != nil || pid <= 0 || pid == d.pid {
			t.Errorf("writer_pid of the flush is not another process's: %s", l.text)
		}
		mustFetch(t, cli, PASV, srv.V4, 21, files)
		mustFetch(t, cli, EPSV, srv.V6, 21, files)
	})

	// Twenty flushes, each waited out: every one is repaired within a
	// second (twenty are within the daemon's burst of immediate repairs).
	t.Run("flush-twenty-times", func(t *testing.T) {
		before := d.count(`msg="table applied"`, "reason=drift")
		var worst time.Duration
		var all []string
		for range 20 {
			srv.MustExec(t, "nft", "flush", "ruleset")
			took := daemonWaitMatches(t, srv, daemonRepairBound)
			worst = max(worst, took)
			all = append(all, took.Round(time.Millisecond).String())
		}
		t.Logf("twenty flushes, status matched after: %s (worst %v)", strings.Join(all, " "), worst.Round(time.Millisecond))
		if n := d.count(`msg="table applied"`, "reason=drift") - before; n != 20 {
			t.Errorf("%d repairs logged for 20 flushes", n)
		}
		if n := d.count("backing off"); n != 0 {
			t.Errorf("the daemon backed off during twenty flushes (%d lines)", n)
		}
		mustFetch(t, cli, PASV, srv.V4, 21, files)
	})

	// nftables.service (re)loads /etc/nftables.conf, which starts with
	// `flush ruleset`: ftpnft's table comes back beside the file's own
	// table, which keeps its handles and content exactly.
	t.Run("nftables-conf-reload", func(t *testing.T) {
		conf := daemonWriteFile(t, dir, "nftables.conf", `#!/usr/sbin/nft -f
flush ruleset

table inet filter {
	chain input {
		type filter hook input priority 0; policy accept;
	}
}
`)
		srv.MustExec(t, "nft", "-f", conf)
		loaded := daemonTableListing(t, srv, "inet", "filter")
		took := daemonWaitMatches(t, srv, daemonRepairBound)
		t.Logf("status matched %v after nft -f returned", took.Round(time.Millisecond))
		if after := daemonTableListing(t, srv, "inet", "filter"); after != loaded {
			t.Fatalf("inet filter changed after the repair:\n--- as loaded\n%s--- after\n%s", loaded, after)
		}
		mustFetch(t, cli, PASV, srv.V4, 21, files)
	})

	// An admin deletes the rule that admits passive data connections: the
	// daemon adds it back.
	t.Run("rule-deleted", func(t *testing.T) {
		const comment = `"ftpnft: related ftp data"`
		handle := daemonRuleHandle(t, srv, "input", comment)
		repairs := d.count(`msg="table applied"`, "reason=drift")
		srv.MustExec(t, "nft", "delete", "rule", "inet", "ftpnft", "input", "handle", handle)
		took := daemonWaitMatches(t, srv, daemonRepairBound)
		l := d.waitLog(t, repairs+1, time.Second, `msg="table applied"`, "reason=drift", "writer=nft")
		t.Logf("rule (handle %s) deleted; status matched %v later; daemon: changes=%q took=%s",
			handle, took.Round(time.Millisecond), daemonAttr(l.text, "changes"), daemonAttr(l.text, "took"))
		if h := daemonRuleHandle(t, srv, "input", comment); h == handle {
			t.Fatalf("the rule has its old handle %s: it was not deleted", h)
		}
		mustFetch(t, cli, PASV, srv.V4, 21, files)
		mustFetch(t, cli, EPSV, srv.V6, 21, files)
	})

	// A strict nftables.conf (policy drop, established and related
	// accepted, port 21 open) relies on ftpnft's helper for passive data
	// connections. With the daemon, a reload of it leaves FTP working ...
	strict := daemonWriteFile(t, dir, "strict.conf", `flush ruleset
table inet filter {
	chain input {
		type filter hook input priority 0; policy drop;
		ct state established,related accept
		iifname "lo" accept
		tcp dport 21 accept
	}
}
`)
	t.Run("strict-conf-reload", func(t *testing.T) {
		srv.MustExec(t, "nft", "-f", strict)
		took := daemonWaitMatches(t, srv, daemonRepairBound)
		t.Logf("status matched %v after nft -f of the strict file", took.Round(time.Millisecond))
		mustFetch(t, cli, PASV, srv.V4, 21, files)
	})

	// ... and without the daemon (stopped with SIGTERM) the same reload, or
	// a bare flush, leaves no table of ftpnft's, and passive FTP fails.
	t.Run("without-daemon", func(t *testing.T) {
		d.signal(t, syscall.SIGTERM)
		if err := d.waitExit(t, 5*time.Second); err != nil {
			t.Fatalf("daemon after SIGTERM: %v", err)
		}
		srv.MustExec(t, "nft", "flush", "ruleset")
		time.Sleep(2 * daemonRepairBound)
		daemonNoTable(t, srv)
		srv.MustExec(t, "nft", "-f", strict)
		time.Sleep(2 * daemonRepairBound)
		daemonNoTable(t, srv)
		if code, out := daemonStatus(t, srv); code != 1 || !strings.Contains(out, "not installed") {
			t.Fatalf("status without the daemon: exit %d\n%s", code, out)
		}
		mustBlock(t, cli, PASV, srv.V4, 21)
	})

	// A real firewalld with port 21 opened permanently (no helper of its
	// own: passive FTP relies on ftpnft's), reloaded with `firewall-cmd
	// --reload`: ftpnft's table matches afterwards, FTP works, and
	// firewalld's table is as firewalld makes it. Before the daemon,
	// firewalld alone lets the control connection in but not the passive
	// data connection.
	t.Run("firewalld-reload", func(t *testing.T) {
		fsrv, fcli := NewPair(t)
		firewallCmd := firewalldIn(t, fsrv)
		StartVsftpd(t, fsrv, 21, files)
		firewallCmd("--permanent", "--add-port=21/tcp")
		firewallCmd("--reload")
		mustBlock(t, fcli, PASV, fsrv.V4, 21)

		fd := daemonStart(t, fsrv, "--policy", "accept")
		fd.waitReady(t)
		mustFetch(t, fcli, PASV, fsrv.V4, 21, files)
		before := fsrv.MustExec(t, "nft", "list", "table", "inet", "firewalld")
		beforeHandles := daemonTableListing(t, fsrv, "inet", "firewalld")
		applied := fd.count(`msg="table applied"`)
		gen := daemonGeneration(t, fsrv)

		firewallCmd("--reload")
		took := daemonWaitMatches(t, fsrv, daemonRepairBound, "--policy", "accept")
		t.Logf("status matched %v after firewall-cmd --reload returned; the reload committed %d batches, the daemon applied %d",
			took.Round(time.Millisecond), daemonGeneration(t, fsrv)-gen, fd.count(`msg="table applied"`)-applied)
		// The reload did rebuild firewalld's table (new handles), so the
		// step is not vacuous.
		if daemonTableListing(t, fsrv, "inet", "firewalld") == beforeHandles {
			t.Fatalf("firewall-cmd --reload did not rebuild firewalld's table")
		}
		if after := fsrv.MustExec(t, "nft", "list", "table", "inet", "firewalld"); after != before {
			t.Fatalf("firewalld's table differs after its reload:\n--- before\n%s--- after\n%s", before, after)
		}
		mustFetch(t, fcli, PASV, fsrv.V4, 21, files)
		mustFetch(t, fcli, EPSV, fsrv.V6, 21, files)
	})
}

// TestDaemonBacksOffFromAFight proves that a second writer that deletes
// the table in a tight loop does not drive the daemon into a tight loop of
// its own: the daemon logs a warning naming the writer (nft, with its
// pid), applies far fewer times than the writer deletes, uses little CPU
// during the fight, and puts the table back once the fight is over,
// within the back-off it announced.
func TestDaemonBacksOffFromAFight(t *testing.T) {
	RequireRoot(t)
	ns := NewHost(t, "fight")
	d := daemonStart(t, ns)
	d.waitReady(t)
	appliedBefore := d.count(`msg="table applied"`)
	cpuBefore := d.cpuTicks(t)

	// About five seconds of `nft delete table inet ftpnft` in a loop,
	// counting attempts and successful deletions.
	const fight = 5 * time.Second
	script := fmt.Sprintf(`n=0 ok=0
end=$(( ${EPOCHREALTIME/./} + %d ))
while (( ${EPOCHREALTIME/./} < end )); do
	if nft delete table inet ftpnft 2>/dev/null; then ok=$((ok+1)); fi
	n=$((n+1))
done
echo $n $ok`, fight.Microseconds())
	start := time.Now()
	out := ns.MustExec(t, "bash", "-c", script)
	fightTook := time.Since(start)
	cpu := d.cpuTicks(t) - cpuBefore
	var attempts, deleted int
	if _, err := fmt.Sscan(out, &attempts, &deleted); err != nil {
		t.Fatalf("the loop said %q: %v", out, err)
	}
	applied := d.count(`msg="table applied"`) - appliedBefore
	t.Logf("fight of %v: %d deletions attempted, %d succeeded; the daemon applied %d times and used %d CPU ticks",
		fightTook.Round(time.Millisecond), attempts, deleted, applied, cpu)

	warn := d.waitLog(t, 1, time.Second, "level=WARN", `msg="another writer keeps changing the table; backing off"`)
	if daemonAttr(warn.text, "writer") != "nft" {
		t.Errorf("the warning does not name writer=nft: %s", warn.text)
	}
	if pid, err := strconv.Atoi(daemonAttr(warn.text, "writer_pid")); err != nil || pid <= 0 || pid == d.pid {
		t.Errorf("the warning does not name the writer's pid: %s", warn.text)
	}
	t.Logf("first warning: %s", warn.text)
	// The kernel names the committing thread, not the process; a daemon
	// that compares it with its process id takes its own batches for
	// another writer's and may name itself (logged, not failed).
	t.Logf("repairs that name the daemon itself as the writer (writer=ftpnft): %d", d.count(`msg="table applied"`, "writer=ftpnft"))
	// A daemon that spun would repair after nearly every deletion. This one
	// repairs at once up to its burst (30 within 10 s), then waits twice as
	// long each time from 250 ms: in five seconds that is at most 6 more.
	if applied > 40 || applied*2 > attempts {
		t.Errorf("the daemon applied %d times for %d deletions attempted: it does not back off", applied, attempts)
	}
	if cpu > 50 {
		t.Errorf("the daemon used %d CPU ticks (1/100 s) during a fight of %v", cpu, fight)
	}
	// Each repair after a warning comes no sooner than the warning's
	// next_in (times from the daemon's own log; a slow machine can only
	// make the gaps longer).
	log, _ := d.snapshot()
	var warnAt time.Time
	var warnNext time.Duration
	var gaps []string
	for _, l := range daemonMatching(log, `msg="table applied"`, "reason=drift") {
		at, err := time.Parse(time.RFC3339Nano, daemonAttr(l.text, "time"))
		if err != nil {
			t.Fatalf("time of %s: %v", l.text, err)
		}
		if !warnAt.IsZero() {
			gap := at.Sub(warnAt)
			gaps = append(gaps, fmt.Sprintf("%v≥%v", gap, warnNext))
			if gap < warnNext-5*time.Millisecond {
				t.Errorf("a repair %v after a warning announced next_in=%v: %s", gap, warnNext, l.text)
			}
			warnAt = time.Time{}
		}
		for _, w := range daemonMatching(log, "backing off", "writer_pid="+daemonAttr(l.text, "writer_pid")) {
			if warnNext, err = time.ParseDuration(daemonAttr(w.text, "next_in")); err != nil {
				t.Fatalf("next_in of %s: %v", w.text, err)
			}
			warnAt = at
		}
	}
	t.Logf("gaps between repairs after a warning and the announced next_in: %s", strings.Join(gaps, ", "))

	// The table comes back by itself, at the latest when the last
	// announced back-off (next_in) has passed.
	warns := daemonMatching(func() []daemonLine { l, _ := d.snapshot(); return l }(), "backing off")
	last := warns[len(warns)-1]
	nextIn, err := time.ParseDuration(daemonAttr(last.text, "next_in"))
	if err != nil {
		t.Fatalf("next_in of %s: %v", last.text, err)
	}
	deadline := time.Until(last.at.Add(nextIn)) + 2*time.Second
	t.Logf("%d back-off warnings, the last with next_in=%v; waiting up to %v", len(warns), nextIn, deadline.Round(time.Millisecond))
	took := daemonWaitMatches(t, ns, max(deadline, daemonRepairBound))
	t.Logf("table back %v after the fight ended", took.Round(time.Millisecond))
}

// TestDaemonReload proves that SIGHUP makes the daemon read its --config
// file again: a bad value is logged naming the file, the line and the
// value, the daemon goes on, and the ruleset stays exactly as it was; a
// good change is applied (a port the policy dropped is admitted), and
// systemd is told RELOADING=1 and then READY=1.
func TestDaemonReload(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	var ln net.Listener
	if err := srv.Do(func() (err error) { ln, err = net.Listen("tcp", ":2222"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	dir := t.TempDir()
	write := func(content string) string { return daemonWriteFile(t, dir, "ftpnft.yaml", content) }
	cfg := write("# ftpnft daemon\nports: [21]\npolicy: drop\n")
	d := daemonStart(t, srv, "--config", cfg)
	d.waitReady(t)
	if err := tcpConnect(t, cli, srv.V4, 2222, 2*time.Second); err == nil {
		t.Fatal("port 2222 is open before it was allowed")
	}
	before := daemonTableListing(t, srv, "inet", "ftpnft")

	// A bad value: logged, and nothing changes.
	write("# ftpnft daemon\nports: [70000]\npolicy: drop\n")
	_, notesBefore := d.snapshot()
	d.signal(t, syscall.SIGHUP)
	_, i := d.waitNote(t, len(notesBefore), "RELOADING=1", 5*time.Second)
	d.waitNote(t, i+1, "READY=1", 5*time.Second)
	bad := d.waitLog(t, 1, time.Second, "level=ERROR", `msg="reload failed; the configuration in force stays"`)
	t.Logf("bad value: %s", bad.text)
	if e := daemonAttr(bad.text, "err"); !daemonHasAll(e, cfg+":2", "70000") {
		t.Errorf("the error does not name %s:2 and the value 70000: %q", cfg, e)
	}
	if d.exited() {
		t.Fatalf("the daemon exited after a bad reload: %v", d.err)
	}
	if after := daemonTableListing(t, srv, "inet", "ftpnft"); after != before {
		t.Fatalf("a failed reload changed the table:\n--- before\n%s--- after\n%s", before, after)
	}
	if code, out := daemonStatus(t, srv, "--ports", "21", "--policy", "drop"); code != 0 {
		t.Fatalf("status after a failed reload: exit %d\n%s", code, out)
	}

	// A good change: the rule is added, and port 2222 admitted.
	write("# ftpnft daemon\nports: [21]\npolicy: drop\nallow: [tcp/2222]\n")
	_, notesBefore = d.snapshot()
	hup := time.Now()
	d.signal(t, syscall.SIGHUP)
	reloading, i := d.waitNote(t, len(notesBefore), "RELOADING=1", 5*time.Second)
	ready, _ := d.waitNote(t, i+1, "READY=1", 5*time.Second)
	d.waitLog(t, 1, time.Second, `msg="configuration read again"`)
	l := d.waitLog(t, 1, time.Second, `msg="table applied"`, "reason=reload")
	t.Logf("good change: RELOADING=1 %v and READY=1 %v after SIGHUP (%q); %s",
		reloading.at.Sub(hup).Round(time.Microsecond), ready.at.Sub(hup).Round(time.Microsecond), ready.text, l.text)
	if code, out := daemonStatus(t, srv, "--ports", "21", "--policy", "drop", "--allow", "tcp/2222"); code != 0 {
		t.Fatalf("status with the new flags: exit %d\n%s", code, out)
	}
	if code, _ := daemonStatus(t, srv, "--ports", "21", "--policy", "drop"); code != 1 {
		t.Fatalf("status with the old flags: exit %d, want 1", code)
	}
	if err := tcpConnect(t, cli, srv.V4, 2222, 5*time.Second); err != nil {
		t.Fatalf("port 2222 after the reload allowed it: %v", err)
	}
}

// TestDaemonStops proves that stopping the daemon leaves FTP working:
// SIGTERM ends it with exit status 0 after STOPPING=1, and the table stays
// and still serves FTP; a daemon killed with SIGKILL leaves the table too.
// `ftpnft uninstall` then removes it.
func TestDaemonStops(t *testing.T) {
	RequireRoot(t)
	files := testFiles(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, files)
	d := daemonStart(t, srv)
	d.waitReady(t)

	_, notesBefore := d.snapshot()
	d.signal(t, syscall.SIGTERM)
	stopping, _ := d.waitNote(t, len(notesBefore), "STOPPING=1", 5*time.Second)
	if err := d.waitExit(t, 5*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
	t.Logf("SIGTERM: %q, exit status 0; last log line: %s", stopping.text, d.waitLog(t, 1, 0, `msg="stopping; the table stays in place"`).text)
	if code, out := daemonStatus(t, srv); code != 0 {
		t.Fatalf("status after SIGTERM: exit %d\n%s", code, out)
	}
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)

	d2 := daemonStart(t, srv)
	d2.waitReady(t)
	d2.signal(t, syscall.SIGKILL)
	if err := d2.waitExit(t, 5*time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("exit after SIGKILL: %v", err)
	}
	if code, out := daemonStatus(t, srv); code != 0 {
		t.Fatalf("status after SIGKILL: exit %d\n%s", code, out)
	}

	if out := mustFtpnft(t, "uninstall", "--netns", srv.Path); !strings.Contains(out, "removed") {
		t.Fatalf("uninstall said %q", out)
	}
	daemonNoTable(t, srv)
	if code, out := daemonStatus(t, srv); code != 1 || !strings.Contains(out, "not installed") {
		t.Fatalf("status after uninstall: exit %d\n%s", code, out)
	}
}

// TestDaemonIdle proves that a daemon with nothing to do uses no CPU to
// speak of: over ten idle seconds after READY=1 its user and system time
// grows by at most two clock ticks (20 ms).
func TestDaemonIdle(t *testing.T) {
	RequireRoot(t)
	ns := NewHost(t, "idle")
	d := daemonStart(t, ns)
	d.waitReady(t)
	before := d.cpuTicks(t)
	time.Sleep(10 * time.Second)
	grew := d.cpuTicks(t) - before
	t.Logf("CPU after READY=1: %d ticks; over 10 s idle it grew by %d", before, grew)
	if grew > 2 {
		t.Fatalf("the idle daemon used %d clock ticks in 10 s, want at most 2", grew)
	}
	if d.exited() {
		t.Fatalf("the daemon exited: %v", d.err)
	}
}

// TestDaemonPutsBansBack: `nft flush ruleset` deletes ftpnft's table with
// its bans; the daemon makes the table anew and puts the bans back, each
// with the time it had left, and the banned client stays refused. Negative
// control: without the daemon, the same flush and an install leave no ban.
func TestDaemonPutsBansBack(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	d := daemonStart(t, srv)
	d.waitReady(t)
	mustFtpnft(t, "ban", "--netns", srv.Path, "--for", "1h", cli.V4.String())
	mustFtpnft(t, "ban", "--netns", srv.Path, cli.V6.String())
	want := func() bool {
		out := mustFtpnft(t, "bans", "--netns", srv.Path, "--json")
		var bans []struct {
			Net         string `json:"net"`
			SecondsLeft int    `json:"seconds_left"`
		}
		if err := json.Unmarshal([]byte(out), &bans); err != nil {
			t.Fatalf("bans --json: %v\n%s", err, out)
		}
		v4, v6 := false, false
		for _, b := range bans {
			v4 = v4 || b.Net == cli.V4.String() && b.SecondsLeft > 3500 && b.SecondsLeft <= 3600
			v6 = v6 || b.Net == cli.V6.String() && b.SecondsLeft == 0
		}
		return v4 && v6
	}
	if !want() {
		t.Fatal("the bans are not listed before the flush")
	}
	srv.MustExec(t, "nft", "flush", "ruleset")
	deadline := time.Now().Add(time.Second)
	for !want() {
		if time.Now().After(deadline) {
			t.Fatalf("the bans were not put back within a second; daemon log:\n%s", d.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.waitLog(t, 1, 5*time.Second, `msg="bans put back"`, "bans=2")
	if err := controlFrom(t, cli, cli.V4.String(), srv.V4); err == nil {
		t.Fatal("the banned client connected after the flush")
	}

	// Without the daemon the bans are gone with the table.
	d.signal(t, syscall.SIGTERM)
	if err := d.waitExit(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	srv.MustExec(t, "nft", "flush", "ruleset")
	mustFtpnft(t, "install", "--netns", srv.Path)
	if out := mustFtpnft(t, "bans", "--netns", srv.Path, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("bans after a flush without the daemon: %s", out)
	}
}
