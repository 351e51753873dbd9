//go:build netns

package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// traceCLI runs `ftpnft doctor --trace --json` for srv (with extra flags)
// and returns once it traces. stop interrupts it (SIGINT), checks that it
// exits 0 and that the trace table is gone, and returns the story lines.
func traceCLI(t *testing.T, srv *Host, args ...string) (stop func() []map[string]string) {
	t.Helper()
	requireTraceState(t)
	pr, pw := io.Pipe()
	var lines []map[string]string
	decoded := make(chan struct{})
	go func() {
		defer close(decoded)
		dec := json.NewDecoder(pr)
		for {
			var l map[string]string
			if err := dec.Decode(&l); err != nil {
				io.Copy(io.Discard, pr)
				return
			}
			lines = append(lines, l)
		}
	}()
	cmd, done, stderr := startCLI(t, pw, "tracing FTP sessions", append([]string{"doctor", "--trace", "--json", "--netns", srv.Path}, args...)...)
	return func() []map[string]string {
		t.Helper()
		time.Sleep(600 * time.Millisecond) // the last packets' verdicts
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("trace after SIGINT: %v\n%s", err, stderr())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("trace did not stop within 5s of SIGINT")
		}
		pw.Close()
		<-decoded
		if tables := srv.MustExec(t, "nft", "list", "tables"); strings.Contains(tables, "ftpnft-trace") {
			t.Fatalf("the trace table is left behind:\n%s", tables)
		}
		return lines
	}
}

// storyText joins story lines, one a line, with their fixes.
func storyText(lines []map[string]string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l["event"] + ": " + l["detail"])
		if l["fix"] != "" {
			b.WriteString(" | fix: " + l["fix"])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// An iptables script that accepts ESTABLISHED and port 21 only: the trace
// of a real curl passive listing tells the story to the drop, naming INPUT
// and its policy, with iptables' fix. Without the script, the story ends
// in "admitted".
func TestTraceNamesTheDrop(t *testing.T) {
	requireTool(t, "iptables-nft")
	srv, cli := ftpPair(t)
	stateless := func() string { return srv.MustExec(t, "nft", "-s", "list", "ruleset") } // counters aside
	before := stateless()
	stop := traceCLI(t, srv)
	if _, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/hello.txt"), okTimeout); err != nil {
		t.Fatal(err)
	}
	story := storyText(stop())
	for _, want := range []string{"control connection opened (new)", "the ftp helper was assigned by inet ftpnft", `server said "227 Entering Passive Mode`, "the helper expects", "(related): admitted"} {
		if !strings.Contains(story, want) {
			t.Errorf("story of a working session lacks %q:\n%s", want, story)
		}
	}
	if after := stateless(); after != before {
		t.Fatalf("the trace changed the ruleset:\n--- before\n%s\n--- after\n%s", before, after)
	}

	for _, rule := range [][]string{
		{"-P", "INPUT", "DROP"},
		{"-A", "INPUT", "-m", "state", "--state", "ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "21", "-j", "ACCEPT"},
	} {
		srv.MustExec(t, "iptables-nft", rule...)
	}
	stop = traceCLI(t, srv)
	if _, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/"), blockedTimeout); err == nil {
		t.Fatal("the passive listing worked behind the script")
	}
	story = storyText(stop())
	if !strings.Contains(story, "(related): dropped by ip filter INPUT policy | fix: iptables -I INPUT -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT") {
		t.Fatalf("story behind the script:\n%s", story)
	}
}

// A server behind cloud-style 1:1 NAT: a NAT namespace forwards a public
// address's port 21 and passive range to the server, without any helper,
// and vsftpd advertises the public address (pasv_address). The server's
// ftp helper (loose=0) records no expectation for an address that is not
// the control connection's, so the passive listing fails through ftpnft's
// policy drop; the trace names the advertised address and suggests
// --passive-ports, and that fix makes it work.
func TestTracePasvAddressBehindNAT(t *testing.T) {
	RequireRoot(t)
	files := testFiles(t)
	r := NewRouted(t, false)
	public := r.RouterOutside[0]
	r.Router.NftApply(t, `table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr `+public.String()+` tcp dport { 21, 50000-50010 } dnat to 203.0.113.2
	}
}`)
	srv, cli := r.Inner, r.Outside
	StartVsftpdWith(t, srv, 21, files, "pasv_address="+public.String(), "pasv_min_port=50000", "pasv_max_port=50010", "listen_ipv6=NO", "listen=YES")
	mustFtpnft(t, "install", "--netns", srv.Path)

	stop := traceCLI(t, srv)
	if _, err := Curl(t, cli, PASV, URL(public, 21, "/"), blockedTimeout); err == nil {
		t.Fatal("the passive listing worked without the passive range")
	}
	story := storyText(stop())
	t.Logf("story:\n%s", story)
	for _, want := range []string{
		"the server advertises " + public.String() + ", not 203.0.113.2, its address on the control connection",
		"--passive-ports LO-HI (and the flags you installed with), with the server's passive range, which includes port 500",
		"(new): dropped by inet ftpnft input policy",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("story lacks %q:\n%s", want, story)
		}
	}
	// The fix, as the trace gives it.
	mustFtpnft(t, "install", "--netns", srv.Path, "--passive-ports", "50000-50010")
	mustFetch(t, cli, PASV, public, 21, files)
}

// FTPS: vsftpd with TLS (a throwaway certificate) and curl --ssl-reqd. The
// helper cannot read the encrypted control channel: the passive listing
// fails through ftpnft alone; the trace says FTPS and suggests
// --passive-ports, and that makes it work.
func TestTraceFTPS(t *testing.T) {
	requireTool(t, "openssl")
	files := testFiles(t)
	srv, cli := NewPair(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
		"-subj", "/CN=ftpnft-test", "-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	StartVsftpdWith(t, srv, 21, files, "ssl_enable=YES", "allow_anon_ssl=YES", "force_anon_logins_ssl=YES",
		"force_anon_data_ssl=YES", "rsa_cert_file="+cert, "rsa_private_key_file="+key, "require_ssl_reuse=NO",
		"pasv_min_port=50000", "pasv_max_port=50010")
	mustFtpnft(t, "install", "--netns", srv.Path)

	ftps := func(timeout time.Duration) error {
		_, stderr, err := cli.run(timeout+2*time.Second, nil, nil, "curl", "--ssl-reqd", "-k", "-s", "--disable-epsv",
			"--max-time", seconds(timeout), URL(srv.V4, 21, "/"))
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		return nil
	}
	stop := traceCLI(t, srv)
	if err := ftps(blockedTimeout); err == nil {
		t.Fatal("the FTPS listing worked through the helper alone")
	}
	story := storyText(stop())
	t.Logf("story:\n%s", story)
	for _, want := range []string{"FTPS; the helper cannot read the encrypted control channel", "--passive-ports LO-HI"} {
		if !strings.Contains(story, want) {
			t.Errorf("story lacks %q:\n%s", want, story)
		}
	}
	mustFtpnft(t, "install", "--netns", srv.Path, "--passive-ports", "50000-50010")
	if err := ftps(okTimeout); err != nil {
		t.Fatalf("FTPS with the passive range open: %v", err)
	}
}

// `doctor --trace | head`: once the reader is gone, the trace ends (exit
// 1, a write error) and removes its table; a stalled reader does not keep
// SIGTERM from ending it either.
func TestTraceEndsWithItsReader(t *testing.T) {
	srv, cli := ftpPair(t)
	for _, end := range []string{"closed pipe", "stalled reader"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if end == "stalled reader" {
			// A full pipe: the trace's first line blocks.
			if _, err := w.Write(make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
		}
		cmd, done, stderr := startCLI(t, w, "tracing FTP sessions", "doctor", "--trace", "--netns", srv.Path)
		w.Close()
		if end == "closed pipe" {
			r.Close()
		}
		for range 3 { // each session writes lines; a stalled pipe fills
			Curl(t, cli, PASV, URL(srv.V4, 21, "/hello.txt"), okTimeout)
		}
		if end == "stalled reader" {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case err := <-done:
			var exit *exec.ExitError
			if end == "closed pipe" && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
				t.Errorf("%s: %v\n%s", end, err, stderr())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the trace still runs\n%s", end, stderr())
		}
		if end == "stalled reader" {
			r.Close()
		}
		if tables := srv.MustExec(t, "nft", "list", "tables"); strings.Contains(tables, "ftpnft-trace") {
			t.Fatalf("%s: the trace table is left behind:\n%s", end, tables)
		}
	}
}

// requireTraceState skips (fails under CI=true) on kernels before 6.16,
// whose trace events carry no conntrack state: the stories then say
// "state unknown" where these tests look for "new" and "related".
func requireTraceState(t *testing.T) {
	t.Helper()
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var release []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	var major, minor int
	fmt.Sscanf(string(release), "%d.%d", &major, &minor)
	if major < 6 || major == 6 && minor < 16 {
		skipOrFatal(t, fmt.Sprintf("kernel %s: trace events carry the conntrack state from Linux 6.16 on", release))
	}
}
