//go:build netns

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostRuleset returns the ruleset of the test process's own namespace (the
// host's), which no test may change.
func hostRuleset(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

// An empty --netns, on the command line or in a config file, is refused
// and never reaches the host's ruleset: on main before this check,
// `install --netns ”` wrote a policy-drop table into the host.
func TestEmptyNetNSNeverMeansTheHost(t *testing.T) {
	RequireRoot(t)
	before := hostRuleset(t)
	config := t.TempDir() + "/ftpnft.yaml"
	if err := os.WriteFile(config, []byte("netns: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"install", "--netns", ""},
		{"install", "--config", config},
		{"uninstall", "--netns", ""},
		{"status", "--netns", ""},
	} {
		code, stdout, stderr := ftpnft(t, args...)
		if code != 2 || !strings.Contains(stderr, `netns "": empty`) {
			t.Errorf("ftpnft %q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}
	if after := hostRuleset(t); after != before {
		t.Fatalf("the host's ruleset changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// nftTable lists ftpnft's table in h.
func nftTable(t *testing.T, h *Host) string {
	t.Helper()
	return h.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
}

// A table of ftpnft's that was flushed by hand drops everything (its chains
// keep policy drop): FTP fails, status says the table was changed, install
// repairs it and FTP works again. A rule and a port set added by hand are
// reported too, and uninstall removes the table whatever was done to it.
func TestHandEditedTableIsRepaired(t *testing.T) {
	RequireRoot(t)
	files := testFiles(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, files)
	mustFtpnft(t, "install", "--netns", srv.Path)
	mustFetch(t, cli, PASV, srv.V4, 21, files)

	srv.MustExec(t, "nft", "flush", "table", "inet", "ftpnft")
	mustBlock(t, cli, PASV, srv.V4, 21) // the negative control: a flushed table drops all
	code, out, stderr := ftpnft(t, "status", "--netns", srv.Path)
	if code != 1 || !strings.Contains(out, "changed by hand or by another program since ftpnft wrote it") ||
		!strings.Contains(out, `differs: chain input: rule "established" missing`) {
		t.Fatalf("status of a flushed table: exit %d\n%s%s", code, out, stderr)
	}
	out = mustFtpnft(t, "install", "--netns", srv.Path)
	if !strings.Contains(out, "table inet ftpnft repaired") {
		t.Fatalf("install over a flushed table: %s", out)
	}
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPRT, srv.V6, 21, files)

	// A rule with an interval set of ports, and one without ftpnft's comment.
	srv.MustExec(t, "nft", "insert", "rule", "inet", "ftpnft", "input", "tcp", "dport", "{ 22, 8000-8080 }", "accept")
	code, out, stderr = ftpnft(t, "status", "--netns", srv.Path)
	if code != 1 || !strings.Contains(out, "changed by hand") || !strings.Contains(out, "is not ftpnft's") {
		t.Fatalf("status with a port set added by hand: exit %d\n%s%s\n%s", code, out, stderr, nftTable(t, srv))
	}
	for _, args := range [][]string{{"status", "--json"}, {"install"}} {
		if code, out, stderr := ftpnft(t, append(args, "--netns", srv.Path)...); code != map[string]int{"status": 1, "install": 0}[args[0]] {
			t.Fatalf("ftpnft %q with a port set added by hand: exit %d\n%s%s", args, code, out, stderr)
		}
	}
	if strings.Contains(nftTable(t, srv), "8000-8080") {
		t.Fatal("install left the rule added by hand")
	}
	srv.MustExec(t, "nft", "flush", "table", "inet", "ftpnft")
	if out := mustFtpnft(t, "uninstall", "--netns", srv.Path); !strings.Contains(out, "removed") {
		t.Fatalf("uninstall of a flushed table: %s", out)
	}
	if out := srv.MustExec(t, "nft", "list", "tables"); strings.Contains(out, "ftpnft") {
		t.Fatalf("table left after uninstall:\n%s", out)
	}
}

// Someone else's table named ftpnft, with an interval set of ports: status
// reports it as foreign (exit 1: not ftpnft's), install and uninstall refuse
// (exit 1) and leave it byte for byte.
func TestForeignTableWithPortSet(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "foreign")
	h.NftApply(t, `table inet ftpnft {
	set svc { type inet_service; flags interval; elements = { 22, 8000-8080 } }
	chain input {
		type filter hook input priority 0; policy accept
		tcp dport @svc accept
	}
}`)
	before := nftTable(t, h)
	code, out, stderr := ftpnft(t, "status", "--netns", h.Path)
	if code != 1 || !strings.Contains(out, "exists but was not created by ftpnft") || strings.Contains(out, "roles:") {
		t.Fatalf("status of a foreign table: exit %d\n%s%s", code, out, stderr)
	}
	for _, cmd := range []string{"install", "uninstall"} {
		code, _, stderr := ftpnft(t, cmd, "--netns", h.Path)
		if code != 1 || !strings.Contains(stderr, "not created by ftpnft") {
			t.Errorf("%s over a foreign table: exit %d, %s", cmd, code, stderr)
		}
	}
	if after := nftTable(t, h); after != before {
		t.Fatalf("the foreign table changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// A status whose output cannot be written fails with exit 1.
func TestStatusToAFullDisk(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "full")
	mustFtpnft(t, "install", "--netns", h.Path)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full:", err)
	}
	defer full.Close()
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"expectations"}, {"expectations", "--json"}} {
		cmd := exec.Command(ftpnftBin, append(args, "--netns", h.Path)...)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = full, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "no space left on device") {
			t.Errorf("ftpnft %q > /dev/full: %v, %s", args, err, stderr.String())
		}
	}
}

// The largest configuration ftpnft accepts fits one batch, with all its
// answers: every role, 256 control ports, 1,024 services, 256 forwards and
// 64 masquerade interfaces install and read back as matching.
func TestLargestConfigurationFitsOneBatch(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "largest")
	ports := make([]string, 256)
	for i := range ports {
		ports[i] = fmt.Sprint(20000 + i)
	}
	args := []string{"--netns", h.Path, "--role", "server,client,router", "--ports", strings.Join(ports, ",")}
	for i := range 1024 {
		args = append(args, "--allow", fmt.Sprintf("tcp/%d", 1024+i))
	}
	for i := range 256 {
		args = append(args, "--dnat", fmt.Sprintf("%d=203.0.113.2:21", 30000+i))
	}
	for i := range 64 {
		args = append(args, "--masquerade", fmt.Sprintf("eth%d", i))
	}
	if out := mustFtpnft(t, append([]string{"install"}, args...)...); !strings.Contains(out, "installed") {
		t.Fatal(out)
	}
	if out := mustFtpnft(t, append([]string{"status"}, args...)...); !strings.Contains(out, "installed, matches the configuration") {
		t.Fatalf("status of the largest configuration:\n%.2000s", out)
	}
	code, _, stderr := ftpnft(t, "install", "--netns", h.Path, "--ports", strings.Join(ports, ",")+",21")
	if code != 2 || !strings.Contains(stderr, "control ports: 257 given, at most 256") {
		t.Fatalf("257 control ports: exit %d, %s", code, stderr)
	}
}

// A watch whose reader stalls still ends on SIGTERM (exit 0) and on the
// deletion of its namespace (exit 1); on main before the fix it hung in the
// write until SIGKILL.
func TestWatchWithStalledReader(t *testing.T) {
	for _, end := range []string{"sigterm", "netns deleted"} {
		t.Run(end, func(t *testing.T) {
			srv, cli := ftpPair(t)
			r, w, err := os.Pipe() // nobody reads r: a stalled reader
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd, done, stderr := startWatch(t, srv, w)
			w.Close()

			// 400 PASV: 800 events of about 600 bytes, far more than the
			// pipe's 64 KiB.
			const burst = 400
			script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/21 && printf 'USER anonymous\r\nPASS x\r\n' >&3 && for i in $(seq %d); do printf 'PASV\r\n' >&3; done && printf 'QUIT\r\n' >&3 && timeout 20 cat <&3 | grep -c '^227'`, srv.V4, burst)
			if replies := strings.TrimSpace(cli.MustExec(t, "bash", "-c", script)); replies != fmt.Sprint(burst) {
				t.Fatalf("server answered %s of %d PASV", replies, burst)
			}
			time.Sleep(500 * time.Millisecond) // the watch has the events; its output is stuck

			wantCode := 0
			if end == "sigterm" {
				cmd.Process.Signal(syscall.SIGTERM)
			} else {
				srv.Delete(t)
				wantCode = 1
			}
			select {
			case err := <-done:
				code := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					code = exit.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != wantCode {
					t.Fatalf("watch with a stalled reader, %s: exit %d, want %d\n%s", end, code, wantCode, stderr())
				}
				if end != "sigterm" && !strings.Contains(stderr(), "network namespace was deleted") {
					t.Fatalf("stderr: %s", stderr())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("watch with a stalled reader still running 5s after %s\n%s", end, stderr())
			}
		})
	}
}
