//go:build netns

package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHarness runs vsftpd and both clients in a namespace pair, in every mode
// over both address families, checks that blocked data connections come back
// as errors quickly, and then that the pair left nothing behind.
func TestHarness(t *testing.T) {
	RequireRoot(t)
	var names []string // namespaces of the pair
	var config string  // vsftpd's configuration path, unique to the server
	t.Run("pair", func(t *testing.T) {
		server, client := NewPair(t)
		names = []string{server.Name, client.Name}
		payload := make([]byte, 4<<20)
		_, _ = rand.Read(payload)
		want := sha256.Sum256(payload)
		srv := StartVsftpd(t, server, 2121, map[string][]byte{
			"payload.bin":      payload,
			"sub/dir/note.txt": []byte("hello\n"),
		})
		config = srv.config
		if !strings.Contains(server.Path, server.Name) || !strings.HasPrefix(server.Name, namePrefix) {
			t.Errorf("server Name %q, Path %q", server.Name, server.Path)
		}

		families := []struct {
			name string
			addr netip.Addr
		}{{"v4", server.V4}, {"v6", server.V6}}
		for _, fam := range families {
			for _, mode := range Modes {
				t.Run(fam.name+"/"+string(mode), func(t *testing.T) {
					file := URL(fam.addr, srv.Port, "payload.bin")
					dir := URL(fam.addr, srv.Port, "/")

					body, err := Curl(t, client, mode, file, 30*time.Second)
					if curlUses(fam.addr, mode) {
						checkPayload(t, "curl", body, err, want)
					} else if !errors.Is(err, ErrWrongMode) {
						t.Errorf("curl %s over %s: err = %v, want ErrWrongMode", mode, fam.name, err)
					}

					list, err := Lftp(t, client, mode, dir, 30*time.Second)
					if !lftpUses(fam.addr, mode) {
						if !errors.Is(err, ErrWrongMode) {
							t.Errorf("lftp %s over %s: err = %v, want ErrWrongMode", mode, fam.name, err)
						}
						return
					}
					if err != nil {
						t.Fatalf("lftp list: %v", err)
					}
					if got := strings.Fields(string(list)); strings.Join(got, " ") != "payload.bin sub/" {
						t.Errorf("lftp list of / = %q, want payload.bin and sub/", list)
					}
					body, err = Lftp(t, client, mode, file, 30*time.Second)
					checkPayload(t, "lftp", body, err, want)
				})
			}
		}

		t.Run("subdirectory", func(t *testing.T) {
			list, err := Curl(t, client, EPSV, URL(server.V6, srv.Port, "/sub/dir/"), 30*time.Second)
			if err != nil || !bytes.Contains(list, []byte("note.txt")) {
				t.Errorf("curl list of /sub/dir/ = %q, %v; want note.txt", list, err)
			}
		})

		// Only the control port open: passive data connections are dropped.
		t.Run("blocked/passive", func(t *testing.T) {
			server.NftApply(t, dropAllBut("tcp dport 2121 accept"))
			defer server.NftApply(t, "delete table inet harness_selftest")
			if !strings.Contains(server.NftList(t), "table inet harness_selftest") {
				t.Fatalf("ruleset not applied:\n%s", server.NftList(t))
			}
			for _, mode := range []Mode{PASV, EPSV} {
				expectBlocked(t, "curl", mode, func(timeout time.Duration) ([]byte, error) {
					return Curl(t, client, mode, URL(server.V4, srv.Port, "payload.bin"), timeout)
				})
			}
			expectBlocked(t, "lftp", PASV, func(timeout time.Duration) ([]byte, error) {
				return Lftp(t, client, PASV, URL(server.V4, srv.Port, "/"), timeout)
			})
		})

		// The client drops new inbound connections: active ones fail.
		t.Run("blocked/active", func(t *testing.T) {
			client.NftApply(t, dropAllBut())
			defer client.NftApply(t, "delete table inet harness_selftest")
			for _, mode := range []Mode{PORT, EPRT} {
				expectBlocked(t, "curl", mode, func(timeout time.Duration) ([]byte, error) {
					return Curl(t, client, mode, URL(server.V4, srv.Port, "payload.bin"), timeout)
				})
			}
			expectBlocked(t, "lftp", EPRT, func(timeout time.Duration) ([]byte, error) {
				return Lftp(t, client, EPRT, URL(server.V6, srv.Port, "/"), timeout)
			})
		})
		if strings.Contains(server.NftList(t)+client.NftList(t), "harness_selftest") {
			t.Errorf("selftest tables not deleted")
		}
	})

	// The pair's cleanup has run: nothing of it may remain.
	if len(names) == 0 {
		return // skipped or failed before creating the pair
	}
	netns, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		prefix := name[:strings.LastIndex(name, "-")]
		for _, line := range strings.Split(string(netns), "\n") {
			if strings.HasPrefix(line, prefix) {
				t.Errorf("namespace %q left behind", line)
			}
		}
		if _, err := os.Stat(filepath.Join(netnsDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s: stat: %v, want not exist", filepath.Join(netnsDir, name), err)
		}
	}
	if pids := processesWhere(func(args []string) bool { return slices.Contains(args, config) }); len(pids) > 0 {
		t.Errorf("vsftpd processes %v left behind", pids)
	}
}

// curlUses reports whether curl can use mode to addr: over IPv6 it replaces
// PASV by EPSV and PORT by EPRT.
func curlUses(addr netip.Addr, mode Mode) bool {
	return addr.Is4() || mode == EPSV || mode == EPRT
}

// lftpUses reports whether lftp can use mode to addr: it sends EPSV and EPRT
// exactly over IPv6, except that ftp:prefer-epsv gives EPSV over IPv4 too.
func lftpUses(addr netip.Addr, mode Mode) bool {
	if addr.Is4() {
		return mode != EPRT
	}
	return mode == EPSV || mode == EPRT
}

// checkPayload checks a fetched file against the payload's hash.
func checkPayload(t *testing.T, client string, body []byte, err error, want [sha256.Size]byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", client, err)
	}
	if got := sha256.Sum256(body); got != want {
		t.Errorf("%s: got %d bytes with sha256 %x, want %d bytes with sha256 %x",
			client, len(body), got, 4<<20, want)
	}
}

// expectBlocked checks that fetch fails, fast, without ErrWrongMode.
func expectBlocked(t *testing.T, client string, mode Mode, fetch func(time.Duration) ([]byte, error)) {
	t.Helper()
	const timeout = 2 * time.Second
	start := time.Now()
	_, err := fetch(timeout)
	elapsed := time.Since(start)
	switch {
	case err == nil:
		t.Errorf("%s %s through the firewall: no error", client, mode)
	case errors.Is(err, ErrWrongMode):
		t.Errorf("%s %s through the firewall: %v, want a plain failure", client, mode, err)
	case elapsed > timeout+clientGrace:
		t.Errorf("%s %s through the firewall took %v with timeout %v", client, mode, elapsed, timeout)
	default:
		t.Logf("%s %s blocked after %v as expected: %.200s", client, mode, elapsed.Round(time.Millisecond), err)
	}
}

// dropAllBut returns a ruleset dropping new inbound connections except those
// the extra rules accept.
func dropAllBut(rules ...string) string {
	return `table inet harness_selftest {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established accept
		meta l4proto ipv6-icmp accept
		` + strings.Join(rules, "\n\t\t") + `
	}
}
`
}

// processesWhere returns the live processes whose arguments (argv) match.
func processesWhere(match func(args []string) bool) []int {
	var pids []int
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		cmdline, err := os.ReadFile(f)
		if err != nil {
			continue // ended meanwhile
		}
		if match(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDoStartsProcessesInside: a process started within Host.Do (as the
// benchmarks start theirs) lives in the host's network namespace; one
// started outside it does not.
func TestDoStartsProcessesInside(t *testing.T) {
	h := NewHost(t, "do")
	fi, err := os.Stat(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := "net:[" + strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10) + "]"
	netnsOf := func(inside bool) string {
		var out bytes.Buffer
		cmd := exec.Command("readlink", "/proc/self/ns/net")
		cmd.Stdout = &out
		start := cmd.Start
		if inside {
			start = func() error { return h.Do(cmd.Start) }
		}
		if err := start(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got := netnsOf(true); got != want {
		t.Errorf("started within Do: namespace %s, want %s (%s)", got, want, h.Name)
	}
	if got := netnsOf(false); got == want {
		t.Errorf("started outside Do: namespace %s, the host's own", got)
	}
}

// TestModeCheck covers the reading of protocol traces without namespaces.
func TestModeCheck(t *testing.T) {
	curlTrace := "* Connected\r\n> USER anonymous\r\n< 230 Login successful.\r\n> EPSV\r\n" +
		"* Failed EPSV attempt. Disabling EPSV\r\n> PASV\r\n< 227 Entering Passive Mode (192,0,2,1,4,1).\r\n"
	lftpTrace := "---> USER anonymous\n<--- 230 Login successful.\n---> PORT 192,0,2,2,4,1\n<--- 200 PORT command successful.\n"
	failed := errors.New("exit status 28")
	tests := []struct {
		name      string
		trace     string
		prefix    string
		want      Mode
		runErr    error
		wrongMode bool
		fails     bool
	}{
		{"curl fallback", curlTrace, "> ", EPSV, nil, true, true},
		{"curl fallback and failure", curlTrace, "> ", EPSV, failed, true, true},
		{"lftp exact", lftpTrace, "---> ", PORT, nil, false, false},
		{"lftp other", lftpTrace, "---> ", EPRT, nil, true, true},
		{"nothing sent, failed", "> USER anonymous\n", "> ", PASV, failed, false, true},
		{"nothing sent, success", "> USER anonymous\n", "> ", PASV, nil, true, true},
	}
	for _, tt := range tests {
		err := checkMode("client", tt.want, dataCommands([]byte(tt.trace), tt.prefix), tt.runErr)
		if (err != nil) != tt.fails || errors.Is(err, ErrWrongMode) != tt.wrongMode {
			t.Errorf("%s: err = %v, want failure %v, ErrWrongMode %v", tt.name, err, tt.fails, tt.wrongMode)
		}
		if tt.runErr != nil && !errors.Is(err, tt.runErr) {
			t.Errorf("%s: err = %v does not wrap %v", tt.name, err, tt.runErr)
		}
	}
}
