package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/nft"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// Usage errors are found before any netlink traffic, so these run without
// privileges and prove that nothing reaches the kernel: exit 2 and a message
// that names the bad value.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"install", "--ports", "0"}, `port "0": out of range`},
		{[]string{"install", "--ports", "21,,22"}, `port "": empty`},
		{[]string{"install", "--ports", "ftp"}, `port "ftp": not a number`},
		{[]string{"install", "--ports", "70000"}, `port "70000"`},
		{[]string{"install", "--policy", "reject"}, `policy "reject"`},
		{[]string{"install", "--allow", "tcp22"}, `service "tcp22"`},
		{[]string{"install", "--allow", "sctp/22"}, `protocol "sctp"`},
		{[]string{"install", "--table", "x; flush ruleset"}, `table "x; flush ruleset"`},
		{[]string{"render", "--table", "counter"}, `table "counter"`},
		{[]string{"install", "--netns", "ftpnft-no-such-namespace"}, `netns "ftpnft-no-such-namespace": no such network namespace`},
		{[]string{"status", "--netns", "/nonexistent/ns"}, `netns "/nonexistent/ns"`},
		{[]string{"uninstall", "--netns", "../etc"}, `netns "../etc"`},
		{[]string{"status", "--netns", ".."}, `netns "..": not a valid namespace name`},
		{[]string{"status", "--netns", "a b"}, `netns "a b": not a valid namespace name`},
		{[]string{"expectations", "--helper", "FTP"}, `helper "FTP": want a kernel helper name`},
		{[]string{"expectations", "--helper", "ftp-helper-16chr"}, `helper "ftp-helper-16chr"`},
		{[]string{"install", "--bogus"}, "unknown flag --bogus"},
		{[]string{"uninstall", "--ports", "21"}, "unknown flag --ports"},
		{[]string{"render", "extra"}, `unexpected argument "extra"`},
		{[]string{"install", "--role", "gateway"}, `role "gateway": want server, client or router`},
		{[]string{"install", "--role", "server,server"}, `role "server" listed twice`},
		{[]string{"install", "--role", ""}, `role ""`},
		{[]string{"install", "--dnat", "21=192.0.2.10:21"}, "dnat 21=192.0.2.10:21: forwarding needs role router (add --role router)"},
		{[]string{"install", "--role", "router", "--dnat", "21=2001:db8::10:21"}, `dnat "21=2001:db8::10:21": target "2001:db8::10:21": an IPv6 target needs brackets`},
		{[]string{"install", "--role", "router", "--dnat", "21:192.0.2.10:21"}, `dnat "21:192.0.2.10:21": want LISTENPORT=ADDR:PORT`},
		{[]string{"install", "--role", "router", "--dnat", "21=192.0.2.10:21", "--dnat", "21=192.0.2.11:21"}, "listen port 21 is already forwarded"},
		{[]string{"install", "--masquerade", "eth0"}, "masquerade eth0: source NAT needs role router"},
		{[]string{"install", "--role", "router", "--masquerade", "eth0;"}, `interface "eth0;"`},
		{[]string{"install", "--related-ports", "1-"}, `--related-ports: port range "1-": port ""`},
		{[]string{"install", "--passive-ports", "50100-50000"}, "--passive-ports: port range 50100-50000: want 1 <= LO <= HI"},
		{[]string{"install", "--passive-ports", "21-30"}, "passive ports 21-30: must be unprivileged"},
		{[]string{"install", "--source", "192.0.2.1/24"}, "source 192.0.2.1/24: host bits set; did you mean 192.0.2.0/24?"},
		{[]string{"install", "--source", "nonsense"}, `source "nonsense": not an address or CIDR`},
		{[]string{"install", "--source-file", "/nonexistent/allow.txt"}, "/nonexistent/allow.txt"},
		{[]string{"install", "--max-conn-per-source", "-1"}, `--max-conn-per-source "-1": want 0 or more`},
		{[]string{"install", "--namespace", "ftp"}, "unknown flag --namespace (did you mean --netns?)"},
		{[]string{"install", "--polcy", "drop"}, "unknown flag --polcy (did you mean --policy?)"},
		{[]string{"expectations", "--wach"}, "unknown flag --wach (did you mean --watch?)"},
		{[]string{"install", "--zzzzzzzz"}, "unknown flag --zzzzzzzz\n"},
		{[]string{"install", "--conn-rate", "10/hour"}, `rate 10/hour: unit "hour"`},
		{[]string{"install", "--role", "client", "--conn-rate", "10/second"}, "add role server or router"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(tt.args...)
		if code != exitUsage {
			t.Errorf("ftpnft %q: exit %d, want %d (stderr %q)", tt.args, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, tt.want) {
			t.Errorf("ftpnft %q: stderr %q, want it to contain %q", tt.args, stderr, tt.want)
		}
		if stdout != "" {
			t.Errorf("ftpnft %q: printed %q on stdout for a usage error", tt.args, stdout)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"install", "-h"}} {
		code, stdout, _ := runCLI(args...)
		if code != exitOK || !strings.Contains(stdout, "ftpnft install") {
			t.Errorf("ftpnft %q: exit %d, stdout %q", args, code, stdout)
		}
	}
}

func TestRenderMatchesLibrary(t *testing.T) {
	cfg := nft.DefaultConfig()
	cfg.Ports = []uint16{21, 2121}
	cfg.Allow = []nft.Service{{Protocol: "tcp", Port: 22}}
	rs, err := nft.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"render", "--ports", "21,2121", "--allow", "tcp/22"},
		{"render", "--ports", "21,2121", "--allow", "tcp/22", "--netns", "not-resolved-by-render"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitOK || stdout != rs.Render() {
			t.Errorf("ftpnft %q: exit %d, stderr %q, stdout differs from nft.Build(...).Render()", args, code, stderr)
		}
	}
}

func TestRenderRoles(t *testing.T) {
	code, stdout, stderr := runCLI("render", "--role", "client,router", "--dnat", "2121=[2001:db8::10]:21", "--masquerade", "wan0")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"type filter hook output priority filter",
		"type filter hook forward priority filter; policy drop;",
		"meta nfproto ipv6 fib daddr type local tcp dport 2121 counter dnat ip6 to [2001:db8::10]:21",
		`oifname "wan0" counter masquerade`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("render lacks %q:\n%s", want, stdout)
		}
	}
}

func TestLockoutGuard(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "198.51.100.9 50022 192.0.2.1 22")
	code, stdout, stderr := runCLI("install", "--netns", "/nonexistent/must-not-be-reached")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "add --allow tcp/22, or --force") {
		t.Fatalf("install over SSH without --allow tcp/22: exit %d, stderr %q", code, stderr)
	}
	// Allowed, --force, dry run, policy accept, or router only: no refusal
	// (these stop at the missing namespace instead).
	for _, extra := range [][]string{{"--allow", "tcp/22"}, {"--force"}, {"--policy", "accept"}, {"--role", "router"}} {
		_, _, stderr := runCLI(append([]string{"install", "--netns", "/nonexistent/ns"}, extra...)...)
		if strings.Contains(stderr, "refusing") || !strings.Contains(stderr, "/nonexistent/ns") {
			t.Errorf("install %v: %q, want no refusal", extra, stderr)
		}
	}
	t.Setenv("SSH_CONNECTION", "198.51.100.9 50022 192.0.2.1 2222")
	_, _, stderr = runCLI("install", "--netns", "/nonexistent/ns", "--allow", "tcp/22")
	if !strings.Contains(stderr, "port 2222") || !strings.Contains(stderr, "--allow tcp/2222") {
		t.Errorf("SSH on port 2222 with only tcp/22 allowed: %q", stderr)
	}
	// A source allowlist that excludes the SSH client does not admit it on a control port either.
	t.Setenv("SSH_CONNECTION", "198.51.100.9 50022 192.0.2.1 21")
	_, _, stderr = runCLI("install", "--netns", "/nonexistent/ns", "--source", "203.0.113.0/24")
	if !strings.Contains(stderr, "refusing") {
		t.Errorf("SSH client outside the allowlist: %q, want a refusal", stderr)
	}
}

func TestWarnings(t *testing.T) {
	st := &nft.Status{Installed: true, RelatedPorts: nft.DefaultRelatedPorts()}
	if w := warnings(st, helper.Capability{Available: true, Ports: "21"}); len(w) != 0 {
		t.Fatalf("warnings for a safe setup: %q", w)
	}
	st.RelatedPorts = nft.PortRange{Lo: 1, Hi: 65535}
	w := warnings(st, helper.Capability{Available: true, Ports: "21", Loose: true, AutoAssign: true})
	want := []string{"loose=1", "nf_conntrack_helper=1", "--related-ports 1-65535"}
	if len(w) != len(want) {
		t.Fatalf("warnings = %q, want %d", w, len(want))
	}
	for i := range want {
		if !strings.Contains(w[i], want[i]) {
			t.Errorf("warning %d = %q, want it to mention %q", i, w[i], want[i])
		}
	}
}

func TestSSHConnection(t *testing.T) {
	if got := parentOf(os.Getpid()); got != os.Getppid() {
		t.Fatalf("parentOf(self) = %d, want %d", got, os.Getppid())
	}
	t.Setenv("SSH_CONNECTION", "")
	t.Setenv("SUDO_USER", "admin")
	if got := sshConnection(); got != "" {
		t.Fatalf("SSH_CONNECTION set but empty: got %q, want no session", got)
	}
	t.Setenv("SSH_CONNECTION", "198.51.100.9 50022 192.0.2.1 22")
	if got := sshConnection(); got != "198.51.100.9 50022 192.0.2.1 22" {
		t.Fatalf("sshConnection = %q", got)
	}
}

// The hint names the kernel interface that failed, whichever command met
// it: conntrack's for the conntrack package's errors (doctor --trace
// watches expectations too), nf_tables' for the rest.
func TestHint(t *testing.T) {
	ctErr := func(cause error) error {
		return fmt.Errorf("watch expectations: %w", &conntrack.Error{Op: "connect to conntrack", Err: cause})
	}
	tests := []struct {
		err  error
		want string
	}{
		{ctErr(errors.ErrUnsupported), "CONFIG_NF_CT_NETLINK"},
		{fmt.Errorf("add table: %w", errors.ErrUnsupported), "CONFIG_NF_TABLES"},
		{ctErr(os.ErrNotExist), "check the namespace with `ip netns list`"},
		{fmt.Errorf("ct helper: %w", os.ErrNotExist), "a missing ct helper type means the kernel lacks nf_conntrack_ftp"},
		{ctErr(os.ErrPermission), "run as root or with CAP_NET_ADMIN"},
		{errors.New("something else"), ""},
	}
	for _, tt := range tests {
		got := hint(tt.err)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("hint(%v) = %q, want it to contain %q", tt.err, got, tt.want)
		}
		if strings.Contains(tt.err.Error(), "conntrack") && strings.Contains(got, "nf_conntrack_ftp") {
			t.Errorf("hint(%v) = %q: a conntrack error told of nf_tables' helper type", tt.err, got)
		}
	}
}
