//go:build netns

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft"
)

// banSession is an FTP control connection from a client namespace to
// vsftpd, logged in anonymously, on which a test sends commands.
type banSession struct {
	c net.Conn
	r *bufio.Reader
}

// banLogin opens a control connection from cli to addr:21 (the socket is
// created inside cli's namespace) and logs in anonymously.
func banLogin(t *testing.T, cli *Host, addr netip.Addr) *banSession {
	t.Helper()
	var c net.Conn
	if err := cli.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, 21).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("control connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &banSession{c: c, r: bufio.NewReader(c)}
	for _, step := range []struct{ send, want string }{{"", "220"}, {"USER anonymous", "230"}} {
		if reply, err := s.cmd(step.send, 5*time.Second); err != nil || !strings.HasPrefix(reply, step.want) {
			t.Fatalf("session to %s: %q: reply %q, %v; want %s", addr, step.send, reply, err, step.want)
		}
	}
	return s
}

// cmd sends line (nothing if empty) and returns the first line of the reply,
// or an error when none comes within timeout.
func (s *banSession) cmd(line string, timeout time.Duration) (string, error) {
	if line != "" {
		s.c.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := fmt.Fprintf(s.c, "%s\r\n", line); err != nil {
			return "", err
		}
	}
	s.c.SetReadDeadline(time.Now().Add(timeout))
	reply, err := s.r.ReadString('\n')
	return strings.TrimRight(reply, "\r\n"), err
}

// stalledDownload starts a passive download of big.bin on s and leaves its
// data connection open with the transfer stalled: the client's socket has
// a receive buffer of 4 KiB and nobody reads it, so vsftpd still has most
// of the 6 MiB to send.
func (s *banSession) stalledDownload(t *testing.T, cli *Host) {
	t.Helper()
	reply, err := s.cmd("PASV", 5*time.Second)
	m := regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`).FindStringSubmatch(reply)
	if err != nil || m == nil {
		t.Fatalf("PASV: %q, %v", reply, err)
	}
	var n [6]int
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	addr := fmt.Sprintf("%d.%d.%d.%d:%d", n[0], n[1], n[2], n[3], n[4]<<8|n[5])
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	var data net.Conn
	if err := cli.Do(func() (err error) {
		data, err = d.Dial("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("data connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { data.Close() })
	if reply, err := s.cmd("RETR big.bin", 5*time.Second); err != nil || !strings.HasPrefix(reply, "150") {
		t.Fatalf("RETR: %q, %v", reply, err)
	}
}

// banListing lists the server's root at addr:21 from cli with curl (PASV
// over IPv4, EPSV over IPv6): nil when the control connection and the
// listing succeed.
func banListing(t *testing.T, cli *Host, addr netip.Addr) error {
	t.Helper()
	mode := PASV
	if addr.Is6() {
		mode = EPSV
	}
	list, err := Curl(t, cli, mode, URL(addr, 21, "/"), blockedTimeout)
	if err == nil && !bytes.Contains(list, []byte("big.bin")) {
		err = fmt.Errorf("listing without big.bin: %q", list)
	}
	return err
}

// mustBeDropped fails the test unless a listing from cli to addr times out
// connecting (curl exit 28): the SYN was dropped, not refused.
func mustBeDropped(t *testing.T, cli *Host, addr netip.Addr) {
	t.Helper()
	err := banListing(t, cli, addr)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 28 {
		t.Fatalf("listing from a banned client at %s: %v, want a connect timeout (curl exit 28)", addr, err)
	}
}

// banEntry is one element of `ftpnft bans --json`.
type banEntry struct {
	Net         string `json:"net"`
	SecondsLeft int64  `json:"seconds_left"`
}

// readBans runs `ftpnft bans --json` in ns.
func readBans(t *testing.T, ns string) []banEntry {
	t.Helper()
	out := mustFtpnft(t, "bans", "--netns", ns, "--json")
	var bans []banEntry
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("bans --json: %v\n%s", err, out)
	}
	return bans
}

// cutCount reads the number of connections `ftpnft ban` cut from its output.
func cutCount(t *testing.T, out string) int {
	t.Helper()
	m := regexp.MustCompile(`^banned .*; (\d+) connections cut\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ban said %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// mustBan runs `ftpnft ban` in srv and fails the test unless it exits 0
// without a warning (such as "open sessions not cut"); it returns stdout.
func mustBan(t *testing.T, srv *Host, args ...string) string {
	t.Helper()
	code, stdout, stderr := ftpnft(t, append([]string{"ban", "--netns", srv.Path}, args...)...)
	t.Logf("ftpnft ban %s: exit %d: %s%s", strings.Join(args, " "), code, stdout, stderr)
	if code != 0 || stderr != "" {
		t.Fatalf("ftpnft ban %s: exit %d, stderr %q; want exit 0 and no warning", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// flowsFrom lists the server's conntrack entries whose original source is
// addr.
func flowsFrom(t *testing.T, srv *Host, addr netip.Addr) string {
	t.Helper()
	out, stderr, err := srv.Exec(t, "conntrack", "-L", "-s", addr.String())
	if err != nil {
		t.Fatalf("conntrack -L: %v", err)
	}
	_ = stderr // "N flow entries have been shown."
	return strings.TrimSpace(out)
}

// TestBanCutsSessionAndRefuses: a client holds a logged-in IPv4 session
// with a stalled passive download and a logged-in IPv6 session. Banning its
// IPv4 address cuts the IPv4 control and data connections from conntrack
// (the next command on the session gets no answer) and drops new IPv4
// connections, while its IPv6 session still answers and new IPv6
// connections work; banning the IPv6 address then ends those too. Before
// the bans (negative control) both families work and conntrack holds both
// sessions.
func TestBanCutsSessionAndRefuses(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := ftpPair(t)

	// Negative control: without a ban both families work.
	for _, addr := range []netip.Addr{srv.V4, srv.V6} {
		if err := banListing(t, cli, addr); err != nil {
			t.Fatalf("before the ban, listing at %s: %v", addr, err)
		}
	}
	s4, s6 := banLogin(t, cli, srv.V4), banLogin(t, cli, srv.V6)
	s4.stalledDownload(t, cli)
	if f := flowsFrom(t, srv, cli.V4); !strings.Contains(f, "dport=21 ") || !strings.Contains(f, "helper=ftp") || strings.Count(f, "\n") < 1 {
		t.Fatalf("before the ban, conntrack lacks the IPv4 session (control and data):\n%s", f)
	}
	if bans := readBans(t, srv.Path); len(bans) != 0 {
		t.Fatalf("bans before any: %v", bans)
	}

	out := mustBan(t, srv, cli.V4.String())
	// The held control and data connections, and the curl sessions above
	// that are still in TIME_WAIT.
	if n := cutCount(t, out); n < 2 || !strings.HasPrefix(out, "banned 192.0.2.2 until unbanned; ") {
		t.Fatalf("ban said %q: want the IPv4 control and data connection cut at least", out)
	}
	if reply, err := s4.cmd("PWD", 3*time.Second); err == nil {
		t.Fatalf("the banned IPv4 session still answers: %q", reply)
	} else {
		t.Logf("banned IPv4 session: PWD: %v", err)
	}
	if f := flowsFrom(t, srv, cli.V4); f != "" {
		t.Fatalf("after the ban, conntrack still lists connections from %s:\n%s", cli.V4, f)
	}
	mustBeDropped(t, cli, srv.V4)
	// The same client over IPv6 is not banned: its session answers, and a
	// new one works.
	if reply, err := s6.cmd("PWD", 5*time.Second); err != nil || !strings.HasPrefix(reply, "257") {
		t.Fatalf("the IPv6 session of the client, not banned: PWD: %q, %v", reply, err)
	}
	if err := banListing(t, cli, srv.V6); err != nil {
		t.Fatalf("IPv6 listing with only IPv4 banned: %v", err)
	}

	out = mustBan(t, srv, cli.V6.String())
	if n := cutCount(t, out); n < 1 {
		t.Fatalf("ban said %q: want the IPv6 control connection cut", out)
	}
	if reply, err := s6.cmd("PWD", 3*time.Second); err == nil {
		t.Fatalf("the banned IPv6 session still answers: %q", reply)
	}
	if f := flowsFrom(t, srv, cli.V6); f != "" {
		t.Fatalf("after the ban, conntrack still lists connections from %s:\n%s", cli.V6, f)
	}
	mustBeDropped(t, cli, srv.V6)
	mustBeDropped(t, cli, srv.V4)

	want := []banEntry{{"192.0.2.2", 0}, {"2001:db8:f7::2", 0}}
	if bans := readBans(t, srv.Path); fmt.Sprint(bans) != fmt.Sprint(want) {
		t.Fatalf("bans --json: %v, want %v", bans, want)
	}
	table := mustFtpnft(t, "bans", "--netns", srv.Path)
	if !regexp.MustCompile(`^NETWORK +LEFT\n192\.0\.2\.2 +until unbanned\n2001:db8:f7::2 +until unbanned\n$`).MatchString(table) {
		t.Fatalf("bans:\n%s", table)
	}
	if st := mustFtpnft(t, "status", "--netns", srv.Path); !strings.Contains(st, "\nbans:     2 (ftpnft bans lists them)\n") {
		t.Fatalf("status:\n%s", st)
	}
	if st, _ := readStatus(t, "--netns", srv.Path); st.Bans != 2 {
		t.Fatalf("status --json: bans %d, want 2", st.Bans)
	}
}

// TestBanSurvivesInstallAndExpires: a ban survives `install` with other
// flags and is lifted by unban; a ban --for 3s (of the IPv4-mapped address,
// flag after it) expires by itself; bad input exits 2 and changes nothing;
// a ban without ftpnft's table exits 1 and creates nothing.
func TestBanSurvivesInstallAndExpires(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := ftpPair(t)
	if err := banListing(t, cli, srv.V4); err != nil {
		t.Fatalf("before the ban: %v", err)
	}

	mustBan(t, srv, cli.V4.String())
	mustBeDropped(t, cli, srv.V4)
	out := mustFtpnft(t, "install", "--netns", srv.Path, "--allow", "tcp/22")
	if !strings.Contains(out, "updated") {
		t.Fatalf("install --allow tcp/22 said %q, want updated", out)
	}
	if listing := srv.MustExec(t, "nft", "list", "table", "inet", "ftpnft"); !strings.Contains(listing, "tcp dport 22") {
		t.Fatalf("install did not add tcp/22:\n%s", listing)
	}
	if bans := readBans(t, srv.Path); len(bans) != 1 || bans[0] != (banEntry{"192.0.2.2", 0}) {
		t.Fatalf("bans after install: %v, want 192.0.2.2 without end", bans)
	}
	mustBeDropped(t, cli, srv.V4)

	out = mustFtpnft(t, "unban", "--netns", srv.Path, cli.V4.String())
	if out != "unbanned 192.0.2.2 (1 of the bans changed)\n" {
		t.Fatalf("unban said %q", out)
	}
	if err := banListing(t, cli, srv.V4); err != nil {
		t.Fatalf("after unban: %v", err)
	}
	if out := mustFtpnft(t, "unban", "--netns", srv.Path, cli.V4.String()); out != "unbanned 192.0.2.2 (0 of the bans changed)\n" {
		t.Fatalf("unban of what is not banned said %q", out)
	}

	// As vsftpd listening on IPv6 logs an IPv4 client; the flag after it.
	out = mustBan(t, srv, "::ffff:"+cli.V4.String(), "--for", "3s")
	if !strings.HasPrefix(out, "banned 192.0.2.2 for 3s; ") {
		t.Fatalf("ban --for 3s said %q", out)
	}
	banned := time.Now()
	if bans := readBans(t, srv.Path); len(bans) != 1 || bans[0].Net != "192.0.2.2" || bans[0].SecondsLeft < 1 || bans[0].SecondsLeft > 3 {
		t.Fatalf("bans after ban --for 3s: %v", bans)
	}
	if err := tcpConnect(t, cli, srv.V4, 21, time.Second); err == nil {
		t.Fatal("a control connection during a 3 s ban succeeded")
	}
	for len(readBans(t, srv.Path)) > 0 {
		if time.Since(banned) > 10*time.Second {
			t.Fatalf("the 3 s ban is still there after %v", time.Since(banned).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the 3 s ban was gone after %v", time.Since(banned).Round(time.Millisecond))
	if err := banListing(t, cli, srv.V4); err != nil {
		t.Fatalf("after the ban expired: %v", err)
	}

	// Bad input: exit 2, naming the value, and nothing changes.
	before := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	gen, err := nft.Generation(context.Background(), nft.WithNetNS(srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"300.1.1.1"}},
		{[]string{"192.0.2.1/33"}},
		{[]string{"--for", "3x", "1.2.3.4"}},
		{[]string{"1.2.3.4", "192.0.2.1/33"}},
	} {
		code, stdout, stderr := ftpnft(t, append([]string{"ban", "--netns", srv.Path}, tc.args...)...)
		bad := tc.args[len(tc.args)-1]
		if tc.args[0] == "--for" {
			bad = tc.args[1]
		}
		if code != 2 || stdout != "" || !strings.Contains(stderr, bad) {
			t.Errorf("ban %q: exit %d, stdout %q, stderr %q; want exit 2 naming %s", tc.args, code, stdout, stderr, bad)
		}
		t.Logf("ban %q: exit %d: %s", tc.args, code, strings.TrimSpace(stderr))
	}
	if after := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft"); after != before {
		t.Errorf("bad input changed the table:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if now, err := nft.Generation(context.Background(), nft.WithNetNS(srv.Path)); err != nil || now != gen {
		t.Errorf("bad input: generation %d, was %d (%v)", now, gen, err)
	}

	// Without ftpnft's table.
	mustFtpnft(t, "uninstall", "--netns", srv.Path)
	empty := srv.NftList(t)
	code, stdout, stderr := ftpnft(t, "ban", "--netns", srv.Path, cli.V4.String())
	if code != 1 || stdout != "" || !strings.Contains(stderr, "ftpnft's table is not installed (run ftpnft install first)") {
		t.Fatalf("ban without a table: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("ban without a table: exit %d: %s", code, strings.TrimSpace(stderr))
	if after := srv.NftList(t); after != empty || strings.TrimSpace(after) != "" {
		t.Fatalf("ban without a table changed the ruleset:\n%s", after)
	}
}

// fail2ban is a fail2ban-server of a test's own, in the foreground in the
// host's namespace, with a private configuration directory, socket and
// in-memory database.
type fail2ban struct {
	dir, sock, log string
	cmd            *exec.Cmd
	done           chan struct{}
}

// startFail2ban starts fail2ban with a copy of /etc/fail2ban in which the
// only jail is contrib's vsftpd jail (jail.d/ftpnft-vsftpd.conf, as
// shipped) with contrib's action (action.d/ftpnft.conf, as shipped); a
// jail.local points it at logPath with the polling backend, bans after 3
// failures within 600 s for 600 s, and action.d/ftpnft.local points the
// action at the test's ftpnft binary and srv's namespace. It returns when
// the jail runs; t.Cleanup stops fail2ban (fail2ban-client stop, then
// SIGKILL).
func startFail2ban(t *testing.T, srv *Host, logPath string) *fail2ban {
	t.Helper()
	requireTool(t, "fail2ban-server")
	requireTool(t, "fail2ban-client")
	tmp := t.TempDir()
	f := &fail2ban{dir: filepath.Join(tmp, "fail2ban"), sock: filepath.Join(tmp, "f2b.sock"),
		log: filepath.Join(tmp, "fail2ban.log"), done: make(chan struct{})}
	if out, err := exec.Command("cp", "-a", "/etc/fail2ban", f.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/fail2ban: %v: %s", err, out)
	}
	// Debian's jail.d/defaults-debian.conf enables sshd, whose action
	// would change the host's firewall: no jail but the test's.
	jails, _ := filepath.Glob(filepath.Join(f.dir, "jail.d", "*"))
	for _, j := range jails {
		if err := os.RemoveAll(j); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("../contrib/fail2ban/jail.d/ftpnft-vsftpd.conf", filepath.Join(f.dir, "jail.d", "ftpnft-vsftpd.conf"))
	copyFile("../contrib/fail2ban/action.d/ftpnft.conf", filepath.Join(f.dir, "action.d", "ftpnft.conf"))
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fail2ban.local", fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = %s\ndbfile = :memory:\nallowipv6 = auto\n", f.log))
	write("jail.local", fmt.Sprintf("[vsftpd]\nlogpath = %s\nbackend = polling\nmaxretry = 3\nfindtime = 600\nbantime = 600\n", logPath))
	write("action.d/ftpnft.local", fmt.Sprintf("[Init]\nftpnft = %s\nftpnft_opts = --netns %s\n", ftpnftBin, srv.Path))

	out, err := os.Create(filepath.Join(tmp, "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	f.cmd = exec.Command("fail2ban-server", "-f", "-x", "-c", f.dir, "-s", f.sock, "-p", filepath.Join(tmp, "f2b.pid"))
	f.cmd.Stdout, f.cmd.Stderr = out, out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("fail2ban-server: %v", err)
	}
	go func() {
		f.cmd.Wait()
		close(f.done)
	}()
	t.Cleanup(func() {
		f.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			l, _ := os.ReadFile(f.log)
			t.Logf("fail2ban-server output:\n%s\nfail2ban log:\n%s", b, l)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		status, err := f.client(t, "status", "vsftpd")
		if err == nil && strings.Contains(status, "Status for the jail: vsftpd") {
			break
		}
		if f.exited() || time.Now().After(deadline) {
			t.Fatalf("fail2ban's jail vsftpd did not start: %v\n%s", err, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for !strings.Contains(f.logText(t), "Jail 'vsftpd' started") {
		if time.Now().After(deadline) {
			t.Fatal("fail2ban's log does not say the jail started")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return f
}

// client runs fail2ban-client against f's socket.
func (f *fail2ban) client(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runCommand(execTimeout, nil, nil, "fail2ban-client", append([]string{"-c", f.dir, "-s", f.sock}, args...)...)
	return string(out), err
}

func (f *fail2ban) logText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fail2ban) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// stop asks fail2ban to stop and kills it if it has not within 15 s.
func (f *fail2ban) stop(t *testing.T) {
	t.Helper()
	if f.exited() {
		return
	}
	if _, err := f.client(t, "stop"); err != nil {
		t.Logf("fail2ban-client stop: %v", err)
	}
	select {
	case <-f.done:
		return
	case <-time.After(15 * time.Second):
	}
	t.Errorf("fail2ban-server (pid %d) did not stop within 15 s; killing it", f.cmd.Process.Pid)
	_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
	<-f.done
}

// failLogins tries to log in to vsftpd at addr from cli n times with a
// wrong password; each attempt must be refused with 530 (curl exit 67),
// but the last may also time out (curl exit 28): vsftpd logs the failure
// before it answers, and fail2ban's ban may cut the session first.
func failLogins(t *testing.T, cli *Host, addr netip.Addr, n int) {
	t.Helper()
	for i := range n {
		// curl's connect timeout covers the login; PAM and vsftpd delay a
		// failed one by 2 to 3 s.
		_, stderr, err := cli.Exec(t, "curl", "-sS", "--connect-timeout", "8", "--max-time", "8",
			"-u", "ftpuser:wrong", URL(addr, 21, "/"))
		t.Logf("failed login %d of %d: %v", i+1, n, err)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 67 && (i < n-1 || exit.ExitCode() != 28) {
			t.Fatalf("failed login %d of %d: %v (%s), want curl exit 67 (login denied)", i+1, n, err, strings.TrimSpace(stderr))
		}
	}
}

// waitBans polls `ftpnft bans` in srv until it lists exactly nets (in
// order) and returns them with their times, or fails after timeout.
func waitBans(t *testing.T, srv *Host, timeout time.Duration, nets ...string) []banEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bans := readBans(t, srv.Path)
		var got []string
		for _, b := range bans {
			got = append(got, b.Net)
		}
		if strings.Join(got, " ") == strings.Join(nets, " ") {
			return bans
		}
		if time.Now().After(deadline) {
			t.Fatalf("bans after %v: %v, want %v", timeout, bans, nets)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFail2banBansThroughFtpnft: a real fail2ban with contrib's jail and
// action, watching a real vsftpd's log (dual_log_enable), bans a client
// after three failed logins through `ftpnft ban` in the server's
// namespace: the client's new control connections are dropped (its IPv6
// address still works). `fail2ban-client set vsftpd unbanip` lifts the ban
// and the client logs in again. Banned again, the ban goes when fail2ban
// stops (actionunban for each address it banned, as the action's comment
// says). Negative controls: started before ftpnft's table exists, the
// action's start fails and fail2ban logs ftpnft's error; before the failed
// logins the client works and nothing is banned.
func TestFail2banBansThroughFtpnft(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	logDir := t.TempDir()
	vsftpdLog := filepath.Join(logDir, "vsftpd.log")
	// fail2ban watches only a log that exists when it starts.
	if err := os.WriteFile(vsftpdLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	StartVsftpdWith(t, srv, 21, testFiles(t),
		"local_enable=YES", // a login with a password that fails is logged
		"dual_log_enable=YES", "vsftpd_log_file="+vsftpdLog, "xferlog_file="+filepath.Join(logDir, "xferlog"),
		"use_localtime=YES") // fail2ban reads the times as local ones

	// Started before ftpnft's table exists, the action's start (ftpnft
	// bans) fails, and fail2ban logs ftpnft's error.
	f2b := startFail2ban(t, srv, vsftpdLog)
	for deadline := time.Now().Add(10 * time.Second); ; {
		l := f2b.logText(t)
		if strings.Contains(l, "ftpnft's table is not installed (run ftpnft install first)") &&
			strings.Contains(l, "Failed to start jail 'vsftpd' action 'ftpnft'") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fail2ban's log, without ftpnft's table:\n%s", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, line := range strings.Split(f2b.logText(t), "\n") {
		if strings.Contains(line, "ERROR") {
			t.Logf("fail2ban without ftpnft's table: %s", line)
		}
	}
	errorsBefore := strings.Count(f2b.logText(t), "ERROR")
	mustFtpnft(t, "install", "--netns", srv.Path)

	// Negative control: the client works and nothing is banned.
	if err := banListing(t, cli, srv.V4); err != nil {
		t.Fatalf("before the failed logins: %v", err)
	}
	if bans := readBans(t, srv.Path); len(bans) != 0 {
		t.Fatalf("bans before the failed logins: %v", bans)
	}

	failLogins(t, cli, srv.V4, 3)
	failed := time.Now()
	bans := waitBans(t, srv, 15*time.Second, "192.0.2.2")
	t.Logf("ftpnft bans, %v after curl's third failed login ended: %v", time.Since(failed).Round(time.Millisecond), bans)
	if bans[0].SecondsLeft < 570 || bans[0].SecondsLeft > 600 {
		t.Errorf("the ban has %d s left, want fail2ban's bantime 600", bans[0].SecondsLeft)
	}
	log, _ := os.ReadFile(vsftpdLog)
	if fail := regexp.MustCompile(`(?m)^.*\[pid \d+\] \[ftpuser\] FAIL LOGIN: Client "::ffff:192\.0\.2\.2"$`).Find(log); fail == nil {
		t.Errorf("vsftpd's log:\n%s", log)
	} else {
		t.Logf("vsftpd's log: %s", fail)
	}
	if status, err := f2b.client(t, "status", "vsftpd"); err != nil || !regexp.MustCompile(`Banned IP list:\s+192\.0\.2\.2\s*$`).MatchString(status) {
		t.Errorf("fail2ban-client status vsftpd: %v\n%s", err, status)
	}
	if err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second); err == nil {
		t.Fatal("a control connection from the banned client succeeded")
	}
	if err := banListing(t, cli, srv.V6); err != nil {
		t.Fatalf("IPv6 listing of the client with its IPv4 address banned: %v", err)
	}

	out, err := f2b.client(t, "set", "vsftpd", "unbanip", cli.V4.String())
	if err != nil {
		t.Fatalf("fail2ban-client set vsftpd unbanip: %v", err)
	}
	t.Logf("fail2ban-client set vsftpd unbanip %s: %s", cli.V4, strings.TrimSpace(out))
	waitBans(t, srv, 10*time.Second)
	if err := banListing(t, cli, srv.V4); err != nil {
		t.Fatalf("after fail2ban unbanned the client: %v", err)
	}

	// Banned again, then fail2ban stops: it unbans what it banned.
	failLogins(t, cli, srv.V4, 3)
	waitBans(t, srv, 15*time.Second, "192.0.2.2")
	f2b.stop(t)
	if bans := readBans(t, srv.Path); len(bans) != 0 {
		t.Fatalf("bans after fail2ban stopped: %v", bans)
	}
	if l := f2b.logText(t); strings.Count(l, "ERROR") != errorsBefore {
		t.Fatalf("fail2ban logged errors with ftpnft's table installed:\n%s", l)
	}
}
