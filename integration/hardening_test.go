//go:build netns

package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft"
)

// tcpConnect opens a TCP connection from h to addr:port with bash's
// /dev/tcp and closes it; it reports whether the handshake completed
// within timeout.
func tcpConnect(t *testing.T, h *Host, addr netip.Addr, port int, timeout time.Duration) error {
	t.Helper()
	_, stderr, err := h.Exec(t, "timeout", seconds(timeout), "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", addr, port))
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
	}
	return nil
}

// holdControl opens an FTP control connection from h to addr:21 and keeps
// it open until the returned function is called.
func holdControl(t *testing.T, h *Host, addr netip.Addr) (release func()) {
	t.Helper()
	// exec: the process the harness started is the one holding the socket.
	cmd := h.Start(t, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/21 && read -r banner <&3 && echo \"$banner\" && exec sleep 120", addr))
	return func() { _ = cmd.Process.Kill() } // the harness waits for it
}

// waitEstablished waits until srv has n established connections on port.
func waitEstablished(t *testing.T, srv *Host, port, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := srv.MustExec(t, "ss", "-Htn", "state", "established", fmt.Sprintf("sport = :%d", port))
		lines := strings.Count(strings.TrimSpace(out), "\n") + 1
		if strings.TrimSpace(out) == "" {
			lines = 0
		}
		if lines == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d established connections on port %d, want %d:\n%s", lines, port, n, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSourceAllowlist: only listed sources (given on the command line and
// in a file of 10,000 entries) open control connections, over IPv4 and
// IPv6; a second address of the same client is dropped.
func TestSourceAllowlist(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)

	var list strings.Builder
	list.WriteString("# 10,000 networks that are not the test client\n")
	for i := range 5000 {
		fmt.Fprintf(&list, "10.%d.%d.1\n2001:db8:%x::1/128 # v6\n", i>>8&255, i&255, 0x1000+i)
	}
	file := filepath.Join(t.TempDir(), "allow.txt")
	if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--netns", srv.Path, "--source", cli.V4.String(), "--source", cli.V6.String() + "/128", "--source-file", file}
	mustFtpnft(t, append([]string{"install"}, args...)...)

	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)
	// A second address of the client, not in the allowlist. (Added only
	// now: Linux would prefer the newer IPv6 address as source.)
	cli.addAddrs(t, "eth-srv", []string{"192.0.2.3/24", "2001:db8:f7::3/64"})
	for other, to := range map[string]netip.Addr{"192.0.2.3": srv.V4, "2001:db8:f7::3": srv.V6} {
		if err := controlFrom(t, cli, other, to); err == nil {
			t.Errorf("control connection from excluded source %s succeeded", other)
		} else {
			t.Logf("excluded source %s: %v", other, err)
		}
	}
	st, counts := readStatus(t, args...)
	if !st.Matches || len(st.Sources) != 10002 || counts["ftp-control: source not allowed ipv4"] == 0 || counts["ftp-control: source not allowed ipv6"] == 0 {
		t.Fatalf("status: matches %v, %d sources, counters %v", st.Matches, len(st.Sources), counts)
	}
}

// TestConnLimit: a third concurrent control connection over a limit of two
// per source is refused at once (TCP reset), and admitted again once the
// others have closed. Without the limit the third is admitted.
func TestConnLimit(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	mustFtpnft(t, "install", "--netns", srv.Path, "--max-conn-per-source", "2")

	r1, r2 := holdControl(t, cli, srv.V4), holdControl(t, cli, srv.V4)
	waitEstablished(t, srv, 21, 2)
	err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("third connection over a limit of 2: %v, want connection refused", err)
	}
	st, counts := readStatus(t, "--netns", srv.Path, "--max-conn-per-source", "2")
	if counts["ftp-control: over 2 connections per source ipv4"] == 0 {
		t.Fatalf("limit counter is zero: %v", counts)
	}
	if !st.Matches || st.MaxConnPerSource != 2 {
		t.Fatalf("status: %+v", st)
	}
	r1()
	r2()
	waitEstablished(t, srv, 21, 0)
	// Closing connections linger in CLOSE_WAIT/LAST_ACK for a moment, and
	// ct count counts them until then.
	deadline := time.Now().Add(10 * time.Second)
	for err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second); err != nil; err = tcpConnect(t, cli, srv.V4, 21, 3*time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("connection after the others closed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Negative control: without the limit a third concurrent connection
	// is admitted.
	mustFtpnft(t, "install", "--netns", srv.Path)
	r3, r4 := holdControl(t, cli, srv.V4), holdControl(t, cli, srv.V4)
	defer r3()
	defer r4()
	waitEstablished(t, srv, 21, 2)
	if err := tcpConnect(t, cli, srv.V4, 21, 3*time.Second); err != nil {
		t.Fatalf("third connection without a limit: %v", err)
	}
}

// burst opens n control connections from cli to srv at once and returns how
// many completed their handshake.
func burst(t *testing.T, cli, srv *Host, n int) int {
	t.Helper()
	script := fmt.Sprintf(`for i in $(seq %d); do (timeout 3 bash -c 'exec 3<>/dev/tcp/%s/21' 2>/dev/null && echo ok) & done; wait`, n, srv.V4)
	out, _, _ := cli.Exec(t, "bash", "-c", script)
	return strings.Count(out, "ok")
}

// TestConnRate: a burst of 40 new control connections against a rate of
// 5/second per source is partly dropped; without the rate all pass.
func TestConnRate(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	mustFtpnft(t, "install", "--netns", srv.Path, "--conn-rate", "5/second")
	ok := burst(t, cli, srv, 40)
	st, counts := readStatus(t, "--netns", srv.Path, "--conn-rate", "5/second")
	if !st.Matches || st.ConnRate != (nft.Rate{N: 5, Unit: "second"}) {
		t.Fatalf("status: %+v", st)
	}
	t.Logf("rate 5/second: %d of 40 connections admitted; %d SYNs dropped", ok, counts["ftp-control: over 5/second per source ipv4"])
	if ok == 0 || ok >= 40 || counts["ftp-control: over 5/second per source ipv4"] == 0 {
		t.Fatalf("burst against 5/second: %d of 40 admitted, counters %v; want some but not all", ok, counts)
	}

	mustFtpnft(t, "install", "--netns", srv.Path)
	if ok := burst(t, cli, srv, 40); ok != 40 {
		t.Fatalf("burst without a rate: %d of 40 admitted, want all", ok)
	}
}

// TestPassivePorts: with --passive-ports a listener inside the range is
// reachable and one outside it is not.
func TestPassivePorts(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 50050, files) // any listener will do
	StartVsftpd(t, srv, 50200, files)
	mustFtpnft(t, "install", "--netns", srv.Path, "--passive-ports", "50000-50100")
	for _, addr := range []netip.Addr{srv.V4, srv.V6} {
		if err := tcpConnect(t, cli, addr, 50050, 3*time.Second); err != nil {
			t.Errorf("listener inside the passive range (%s): %v", addr, err)
		}
		if err := tcpConnect(t, cli, addr, 50200, 3*time.Second); err == nil {
			t.Errorf("listener outside the passive range (%s) was reachable", addr)
		}
	}
	st, _ := readStatus(t, "--netns", srv.Path, "--passive-ports", "50000-50100")
	if st.PassivePorts != (nft.PortRange{Lo: 50000, Hi: 50100}) || !st.Matches {
		t.Fatalf("status: %+v", st)
	}
}

// TestRelatedUnprivilegedOnly plays NAT slipstreaming against a client-role
// host: its FTP client sends "PORT" naming a privileged port (1000) of its
// own, so the helper expects a connection from the server to it. By
// default ftpnft admits RELATED data connections only to unprivileged
// ports, so the server's connection to port 1000 is dropped; with
// --related-ports 1-65535 (the old, loose policy) it gets through.
func TestRelatedUnprivilegedOnly(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	StartVsftpd(t, cli, 1000, files) // the "internal service" on a privileged port

	a := cli.V4.As4()
	port := fmt.Sprintf("PORT %d,%d,%d,%d,3,232", a[0], a[1], a[2], a[3]) // port 3*256+232 = 1000
	expectPort1000 := func() (release func()) {
		// vsftpd refuses the PORT command, but the helper has already
		// created the expectation when the command passed by.
		cmd := cli.Start(t, "bash", "-c", fmt.Sprintf(`exec 3<>/dev/tcp/%s/21
read -r l <&3; printf 'USER anonymous\r\n' >&3; read -r l <&3
printf 'PASS x\r\n' >&3; read -r l <&3
printf '%s\r\n' >&3; read -r l <&3; echo "$l"; exec sleep 60`, srv.V4, port))
		return func() { _ = cmd.Process.Kill() } // the harness waits for it
	}

	for _, tc := range []struct {
		args  []string
		admit bool
	}{
		{[]string{"--role", "client"}, false},
		{[]string{"--role", "client", "--related-ports", "1-65535"}, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			mustFtpnft(t, append([]string{"install", "--netns", cli.Path}, tc.args...)...)
			release := expectPort1000()
			defer release()
			deadline := time.Now().Add(10 * time.Second)
			for out := ""; !strings.Contains(out, "dport=1000"); out = cli.MustExec(t, "conntrack", "-L", "expect") {
				if time.Now().After(deadline) {
					t.Fatalf("no expectation for port 1000:\n%s", out)
				}
				time.Sleep(100 * time.Millisecond)
			}
			err := tcpConnect(t, srv, cli.V4, 1000, 3*time.Second)
			if tc.admit && err != nil {
				t.Fatalf("related connection to port 1000 with --related-ports 1-65535: %v", err)
			}
			if !tc.admit && err == nil {
				t.Fatal("related connection to privileged port 1000 was admitted by default")
			}
		})
	}
}

// TestLockoutGuard: run as if from an SSH session to port 22, install with
// policy drop refuses, naming --allow tcp/22, and changes nothing; with
// --allow tcp/22 or --force it installs.
func TestLockoutGuard(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, _ := NewPair(t)
	before := srv.NftList(t)
	code, stdout, stderr := ftpnftEnv(t, []string{"SSH_CONNECTION=198.51.100.9 50022 192.0.2.1 22"}, "install", "--netns", srv.Path)
	if code != 2 || stdout != "" || !strings.Contains(stderr, "--allow tcp/22") {
		t.Fatalf("install from an SSH session: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if after := srv.NftList(t); after != before {
		t.Fatalf("refused install changed the ruleset:\n%s", after)
	}
	for _, extra := range [][]string{{"--allow", "tcp/22"}, {"--force"}} {
		code, _, stderr := ftpnftEnv(t, []string{"SSH_CONNECTION=198.51.100.9 50022 192.0.2.1 22"}, append([]string{"install", "--netns", srv.Path}, extra...)...)
		if code != 0 {
			t.Fatalf("install %v from an SSH session: exit %d: %s", extra, code, stderr)
		}
	}
}

// A million IPv4 and a million IPv6 networks in one allowlist: the batch is
// larger than any socket buffer's default, and installs in one transaction. Sampled members
// are in the kernel's set and the addresses between them are not; the
// allowlisted client works, another address of it does not. (On main before
// session 7: "sendmsg: message too long" from 500,000 networks on.)
func TestMillionNetworks(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	var list strings.Builder
	list.Grow(60 << 20)
	list.WriteString(cli.V4.String() + "\n" + cli.V6.String() + "\n")
	for i := range 1_000_000 {
		a := 10<<24 + 2*i // every other address: no two merge into a range
		fmt.Fprintf(&list, "%d.%d.%d.%d\n", a>>24, a>>16&255, a>>8&255, a&255)
		fmt.Fprintf(&list, "2001:db8:100::%x:%x\n", 2*i>>16, 2*i&0xffff)
	}
	file := filepath.Join(t.TempDir(), "million.txt")
	if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustFtpnft(t, "install", "--netns", srv.Path, "--source-file", file)
	t.Logf("1,000,001 IPv4 and 1,000,001 IPv6 networks installed in one batch in %v", time.Since(start).Round(time.Millisecond))
	// Members and the addresses between them, by what the kernel does with
	// their connections (`nft get element` loads the whole set into nft's
	// cache first: a minute for each). The server routes them back.
	srv.mustIP(t, "route", "add", "10.0.0.0/8", "dev", "eth-cli")
	srv.mustIP(t, "-6", "route", "add", "2001:db8:100::/48", "dev", "eth-cli")
	samples := map[string]bool{"10.0.0.2": true, "10.30.132.126": true, "10.0.0.3": false, "10.30.132.127": false,
		"2001:db8:100::2": true, "2001:db8:100::1e:847e": true, "2001:db8:100::3": false, "2001:db8:100::1e:847f": false}
	var addrs []string
	for a := range samples {
		addrs = append(addrs, a+map[bool]string{true: "/128", false: "/32"}[strings.Contains(a, ":")])
	}
	cli.addAddrs(t, "eth-srv", addrs)
	for addr, member := range samples {
		to := srv.V4
		if strings.Contains(addr, ":") {
			to = srv.V6
		}
		if err := controlFrom(t, cli, addr, to); member != (err == nil) {
			t.Errorf("control connection from %s (member %v): %v", addr, member, err)
		}
	}
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)
	cli.addAddrs(t, "eth-srv", []string{"192.0.2.3/24"})
	if err := controlFrom(t, cli, "192.0.2.3", srv.V4); err == nil {
		t.Error("a control connection from an address outside the million succeeded")
	}
}

// A blocklist in Spamhaus' format with the client's second address: that
// address is refused (control connection dropped), the first one works;
// status counts the blocked ranges. Without the blocklist both work.
func TestBlockFile(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	cli.addAddrs(t, "eth-srv", []string{"192.0.2.3/32"})
	mustFtpnft(t, "install", "--netns", srv.Path)
	if err := controlFrom(t, cli, "192.0.2.3", srv.V4); err != nil {
		t.Fatalf("without a blocklist: %v", err)
	}
	file := filepath.Join(t.TempDir(), "drop.txt")
	if err := os.WriteFile(file, []byte("; Spamhaus DROP List\n192.0.2.3/32 ; SBL1\n198.51.100.0/24 ; SBL2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFtpnft(t, "install", "--netns", srv.Path, "--block-file", file)
	if err := controlFrom(t, cli, "192.0.2.3", srv.V4); err == nil {
		t.Fatal("a blocked source opened a control connection")
	}
	mustFetch(t, cli, PASV, srv.V4, 21, files) // from 192.0.2.2, not blocked
	out := mustFtpnft(t, "status", "--netns", srv.Path)
	if !strings.Contains(out, "blocked:  2 ranges dropped before anything else (192.0.2.3,198.51.100.0/24)") {
		t.Fatalf("status:\n%s", out)
	}
}

// controlFrom lists the FTP server at to, port 21, from the client's address
// from (curl --interface): nil when the control connection and the listing
// succeed.
func controlFrom(t *testing.T, cli *Host, from string, to netip.Addr) error {
	t.Helper()
	_, _, err := cli.Exec(t, "curl", "-sS", "--connect-timeout", "3", "--interface", from, URL(to, 21, "/"))
	return err
}
