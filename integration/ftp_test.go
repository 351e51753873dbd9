//go:build netns

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft"
)

const (
	okTimeout      = 30 * time.Second // a transfer that must work
	blockedTimeout = 6 * time.Second  // a transfer that must fail
)

// ftpnft runs the ftpnft binary and returns its exit code and output.
func ftpnft(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return ftpnftEnv(t, nil, args...)
}

// ftpnftEnv is ftpnft with extra environment variables. The tests work in
// their own namespaces: SSH_CONNECTION is set empty ("not over SSH") unless
// env sets it, so that a CI job run over SSH or sudo does not trip the
// lockout guard.
func ftpnftEnv(t testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(ftpnftBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SSH_CONNECTION=") }),
		append([]string{"SSH_CONNECTION="}, env...)...)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("ftpnft %q: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// mustFtpnft runs ftpnft and fails the test unless it exits 0.
func mustFtpnft(t testing.TB, args ...string) string {
	t.Helper()
	code, stdout, stderr := ftpnft(t, args...)
	if code != 0 {
		t.Fatalf("ftpnft %q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
	}
	return stdout
}

// testFiles returns a small file and a multi-megabyte random one.
func testFiles(t testing.TB) map[string][]byte {
	big := make([]byte, 6<<20+12345)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"hello.txt": []byte("hello through the firewall\n"), "big.bin": big}
}

// ftpPair returns a server running vsftpd on port 21 behind
// `ftpnft install` (policy drop) and a client next to it.
func ftpPair(t *testing.T) (srv, cli *Host) {
	t.Helper()
	RequireRoot(t)
	srv, cli = NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	mustFtpnft(t, "install", "--netns", srv.Path)
	return srv, cli
}

// withoutHelper renders the ruleset of cfg without the helper object and
// its assignment (nft.Ruleset.WithoutHelper): the same policy, minus what
// ftpnft is for. It is the negative control of every scenario.
func withoutHelper(t testing.TB, cfg nft.Config) string {
	t.Helper()
	rs, err := nft.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := rs.WithoutHelper().Render()
	if strings.Contains(s, "ct helper set") || strings.Contains(s, "type \"ftp\"") || s == rs.Render() {
		t.Fatalf("withoutHelper did not remove the helper:\n%s", s)
	}
	return s
}

// TestInstallMakesFTPWork installs ftpnft with policy drop in the server's
// namespace and proves passive and active listings and a byte-identical
// download over IPv4 and IPv6, on port 21 and a non-standard port; then it
// loads the same policy without the helper and proves passive data
// connections fail.
func TestInstallMakesFTPWork(t *testing.T) {
	RequireRoot(t)
	files := testFiles(t)
	for _, port := range []int{21, 2121} {
		t.Run(fmt.Sprintf("port%d", port), func(t *testing.T) {
			srv, cli := NewPair(t)
			StartVsftpd(t, srv, port, files)
			mustFtpnft(t, "install", "--netns", srv.Path, "--policy", "drop", "--ports", fmt.Sprint(port))

			for _, fam := range targets(srv.V4, srv.V6) {
				for _, mode := range fam.modes {
					t.Run(fmt.Sprintf("%s/%s", fam.name, mode), func(t *testing.T) {
						mustFetch(t, cli, mode, fam.addr, port, files)
					})
				}
				// A second client implementation, one passive and one active mode.
				for _, mode := range []Mode{fam.modes[0], fam.modes[len(fam.modes)/2]} {
					t.Run(fmt.Sprintf("%s/lftp-%s", fam.name, mode), func(t *testing.T) {
						out, err := Lftp(t, cli, mode, URL(fam.addr, port, "/hello.txt"), okTimeout)
						if err != nil || !bytes.Equal(out, files["hello.txt"]) {
							t.Fatalf("lftp cat: %v\n%q", err, out)
						}
					})
				}
			}

			// Negative control: the same drop policy without the helper.
			cfg := nft.DefaultConfig()
			cfg.Ports = []uint16{uint16(port)}
			mustFtpnft(t, "uninstall", "--netns", srv.Path)
			srv.NftApply(t, withoutHelper(t, cfg))
			for _, fam := range targets(srv.V4, srv.V6) {
				t.Run(fam.name+"/without-helper", func(t *testing.T) {
					mustBlock(t, cli, fam.modes[0], fam.addr, port)
				})
			}
		})
	}
}

// foreignTables lists, with rule handles, the two tables that tests load
// beside ftpnft's: "inet firewalld_like" and "ip filter".
func foreignTables(t *testing.T, h *Host) string {
	t.Helper()
	return h.MustExec(t, "nft", "-a", "list", "table", "inet", "firewalld_like") +
		h.MustExec(t, "nft", "-a", "list", "table", "ip", "filter")
}

// TestReinstallIdempotentAndForeignTablesUntouched installs twice (the second
// time nothing is sent: rule handles stay the same), changes a flag (the table
// is changed in place, in one batch: the rules for the new ports are added),
// uninstalls twice, and shows that tables ftpnft did not create are untouched
// throughout.
func TestReinstallIdempotentAndForeignTablesUntouched(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	foreign := `table inet firewalld_like {
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		tcp dport 80 counter accept comment "not ftpnft's"
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr 198.51.100.7 counter drop
	}
}
`
	srv.NftApply(t, foreign)
	foreignBefore := foreignTables(t, srv)

	out := mustFtpnft(t, "install", "--netns", srv.Path)
	if !strings.Contains(out, "installed") {
		t.Fatalf("first install said %q", out)
	}
	first := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")

	out = mustFtpnft(t, "install", "--netns", srv.Path)
	if !strings.Contains(out, "unchanged") {
		t.Fatalf("second install said %q, want unchanged", out)
	}
	if second := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft"); second != first {
		t.Fatalf("re-install changed the table:\n--- before\n%s\n--- after\n%s", first, second)
	}

	out = mustFtpnft(t, "install", "--netns", srv.Path, "--ports", "21,2121", "--allow", "tcp/22")
	if !strings.Contains(out, "updated (3 rules added)") {
		t.Fatalf("install with new ports said %q, want updated (3 rules added)", out)
	}
	third := srv.MustExec(t, "nft", "-a", "list", "table", "inet", "ftpnft")
	if !strings.Contains(third, "tcp dport 2121 ct state new ct helper set") || !strings.Contains(third, "tcp dport 22 counter") {
		t.Fatalf("changed table lacks the new ports:\n%s", third)
	}
	if strings.Count(third, "chain input") != 1 || strings.Count(third, "ct helper ftp-helper {") != 1 {
		t.Fatalf("duplicate chains or helpers after the change:\n%s", third)
	}
	if list, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/"), okTimeout); err != nil || !bytes.Contains(list, []byte("hello.txt")) {
		t.Fatalf("FTP after replace: %v\n%s", err, list)
	}
	if got := foreignTables(t, srv); got != foreignBefore {
		t.Fatalf("install changed foreign tables:\n--- before\n%s\n--- after\n%s", foreignBefore, got)
	}

	out = mustFtpnft(t, "uninstall", "--netns", srv.Path)
	if !strings.Contains(out, "removed") {
		t.Fatalf("uninstall said %q", out)
	}
	out = mustFtpnft(t, "uninstall", "--netns", srv.Path)
	if !strings.Contains(out, "nothing to remove") {
		t.Fatalf("second uninstall said %q", out)
	}
	if rs := srv.NftList(t); strings.Contains(rs, "table inet ftpnft") {
		t.Fatalf("ruleset after uninstall still mentions ftpnft:\n%s", rs)
	}
	if got := foreignTables(t, srv); got != foreignBefore {
		t.Fatalf("uninstall changed foreign tables:\n--- before\n%s\n--- after\n%s", foreignBefore, got)
	}

	// A foreign table with ftpnft's name is refused and left alone.
	srv.NftApply(t, "table inet ftpnft {\n\tchain mine {\n\t\tcounter\n\t}\n}\n")
	before := srv.NftList(t)
	for _, cmd := range []string{"install", "uninstall"} {
		code, _, stderr := ftpnft(t, cmd, "--netns", srv.Path)
		if code != 1 || !strings.Contains(stderr, "not created by ftpnft") {
			t.Fatalf("%s over a foreign table named ftpnft: exit %d, %s", cmd, code, stderr)
		}
	}
	if after := srv.NftList(t); after != before {
		t.Fatalf("foreign table named ftpnft changed:\n%s", after)
	}
}

// TestRenderEqualsInstall loads `ftpnft render` with nft -f in one namespace
// and runs `ftpnft install` in another: the kernel must hold the same ruleset,
// and status must recognise the nft-loaded table as matching.
func TestRenderEqualsInstall(t *testing.T) {
	RequireRoot(t)
	for name, args := range map[string][]string{
		"server": {"--ports", "21,990", "--allow", "tcp/22", "--allow", "udp/53", "--policy", "accept"},
		"client": {"--role", "client", "--ports", "21,2121"},
		"router": {"--role", "router,server", "--ports", "21,2121", "--allow", "tcp/443",
			"--dnat", "10021=203.0.113.2:21", "--dnat", "10022=203.0.113.3:2021", "--dnat", "10021=[2001:db8:113::2]:21",
			"--dnat", "10023=203.0.113.2:21",
			"--masquerade", "eth-out", "--masquerade", "wan0"},
		"hardened": {"--role", "server,router", "--source", "192.0.2.0/24", "--source", "198.51.100.7",
			"--source", "2001:db8::/32", "--max-conn-per-source", "3", "--conn-rate", "20/minute",
			"--passive-ports", "50000-50100", "--related-ports", "1024-65000", "--dnat", "10021=203.0.113.2:21"},
	} {
		t.Run(name, func(t *testing.T) {
			a := NewHost(t, "nft")
			b := NewHost(t, "netlink")
			rendered := mustFtpnft(t, append([]string{"render"}, args...)...)
			if _, stderr, err := a.Exec(t, "sh", "-c", "nft -c -f - <<'EOF'\n"+rendered+"EOF\n"); err != nil {
				t.Fatalf("nft -c rejects render output: %v %s", err, stderr)
			}
			a.NftApply(t, rendered)
			mustFtpnft(t, append([]string{"install", "--netns", b.Path}, args...)...)
			// install adds the chain that carries its stamp, which nft
			// cannot write.
			if la, lb := a.NftList(t), withoutStampChain(b.NftList(t)); la != lb {
				t.Fatalf("nft -f of render and install differ:\n--- nft -f\n%s\n--- install\n%s", la, lb)
			}
			// The rendered text replaces an existing table too (it deletes it first).
			a.NftApply(t, rendered)
			out := mustFtpnft(t, append([]string{"install", "--netns", a.Path}, args...)...)
			if !strings.Contains(out, "unchanged (it held this configuration; ftpnft's stamp was added)") {
				t.Fatalf("install over the identical nft-loaded table said %q, want unchanged, with the stamp added", out)
			}
			st, _ := readStatus(t, append([]string{"--netns", a.Path}, args...)...)
			if !st.Installed || !st.Owned || !st.Matches {
				t.Fatalf("status of nft-loaded render: %+v", st)
			}
		})
	}
}

// withoutStampChain removes the stamp chain from an `nft list` of
// ftpnft's table.
func withoutStampChain(listing string) string {
	start := strings.Index(listing, "\n\n\tchain stamp {\n")
	if start < 0 {
		return listing
	}
	end := strings.Index(listing[start:], "\n\t}\n")
	if end < 0 {
		return listing
	}
	return listing[:start] + listing[start+end+len("\n\t}"):]
}

// TestStatusShowsHelperAndRelated reads the rule counters after a passive
// transfer: the helper was assigned and related data was admitted.
func TestStatusShowsHelperAndRelated(t *testing.T) {
	srv, cli := ftpPair(t)
	if _, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/hello.txt"), okTimeout); err != nil {
		t.Fatal(err)
	}
	js := mustFtpnft(t, "status", "--json", "--netns", srv.Path)
	var st struct {
		nft.Status
		Kernel struct {
			Available bool `json:"available"`
		} `json:"kernel"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, c := range st.Counters {
		counts[c.Rule] = c.Packets
	}
	if !st.Installed || !st.Matches || st.Policy != nft.PolicyDrop || len(st.Ports) != 1 || st.Ports[0] != 21 || !st.Kernel.Available {
		t.Fatalf("status: %s", js)
	}
	if len(st.Helpers) != 1 || st.Helpers[0].Type != "ftp" || st.Helpers[0].Name != nft.HelperObject {
		t.Fatalf("status helpers: %+v", st.Helpers)
	}
	if counts["assign ftp helper port 21"] == 0 || counts["related ftp data"] == 0 {
		t.Fatalf("counters do not show helper assignment and related data: %v", counts)
	}
	human := mustFtpnft(t, "status", "--netns", srv.Path)
	for _, want := range []string{"installed, matches the configuration", "ftp-helper", "ports:    21", "policy:   drop", "related ftp data"} {
		if !strings.Contains(human, want) {
			t.Fatalf("status output lacks %q:\n%s", want, human)
		}
	}
}

// TestLibrary drives the nft package directly, as a Go program embedding
// ftpnft would, and shows that a batch the kernel rejects changes nothing.
func TestLibrary(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, testFiles(t))
	cfg := nft.DefaultConfig()
	rs, err := nft.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := nft.Apply(context.Background(), rs, nft.WithNetNS(srv.Path)); err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if _, err := Curl(t, cli, EPSV, URL(srv.V6, 21, "/hello.txt"), okTimeout); err != nil {
		t.Fatal(err)
	}

	// Kernel-side failures in the middle of the batch: the ruleset is
	// byte-identical afterwards, handles included, and the error names the
	// message the kernel rejected.
	before := srv.MustExec(t, "nft", "-a", "list", "ruleset")
	other := nft.DefaultConfig()
	other.Ports = []uint16{21, 2121}
	for _, tc := range []struct {
		name  string
		spoil func(*nft.Ruleset)
		step  string // what the error must name
	}{
		{"unknown helper type", func(rs *nft.Ruleset) { rs.Helpers[0].Type = "no-such-helper" },
			"add object " + rs.Helpers[0].Name},
		{"rule refers to a missing helper object", func(rs *nft.Ruleset) { rs.Helpers = nil },
			`add rule to chain prerouting (comment "ftpnft: `},
	} {
		broken, err := nft.Build(other)
		if err != nil {
			t.Fatal(err)
		}
		tc.spoil(broken)
		_, err = nft.Apply(context.Background(), broken, nft.WithNetNS(srv.Path))
		var nerr *nft.Error
		if !errors.As(err, &nerr) || nerr.Op != "install" || !strings.Contains(nerr.Step, tc.step) {
			t.Fatalf("%s: Apply = %v, want *nft.Error for install naming %q", tc.name, err, tc.step)
		}
		t.Logf("%s: %v", tc.name, err)
		if after := srv.MustExec(t, "nft", "-a", "list", "ruleset"); after != before {
			t.Fatalf("%s: failed batch changed the ruleset:\n--- before\n%s\n--- after\n%s", tc.name, before, after)
		}
	}

	st, err := nft.ReadStatus(context.Background(), rs, nft.WithNetNS(srv.Path))
	if err != nil || !st.Matches {
		t.Fatalf("ReadStatus = %+v, %v", st, err)
	}
	if removed, err := nft.Remove(context.Background(), cfg.Table, nft.WithNetNS(srv.Path)); err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
}

// TestUnprivileged runs ftpnft as an unprivileged user: a one-line error that
// says what to do, exit 1, and no change.
func TestUnprivileged(t *testing.T) {
	RequireRoot(t)
	srv, _ := NewPair(t)
	before := srv.NftList(t)
	for _, cmd := range []string{"install", "status", "uninstall", "expectations"} {
		c := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ftpnftBin, cmd, "--netns", srv.Path)
		out, err := c.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("%s as nobody: %v\n%s", cmd, err, out)
		}
		if !strings.Contains(string(out), "CAP_NET_ADMIN") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Fatalf("%s as nobody: want one line naming CAP_NET_ADMIN, got %q", cmd, out)
		}
	}
	if after := srv.NftList(t); after != before {
		t.Fatalf("unprivileged run changed the ruleset:\n%s", after)
	}
}

// TestConfigFile installs from a YAML file: FTP works, status with the same
// file matches, uninstall with it removes the table.
func TestConfigFile(t *testing.T) {
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 2121, files)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "partners.txt"), []byte("# the client\n"+cli.V6.String()+"/128\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ftpnft.yaml")
	content := fmt.Sprintf("netns: %s\nports: [2121]\npolicy: drop\nallow: [tcp/22]\nsource: [%s/32]\nsource-file: [partners.txt]\nmax-conn-per-source: 5\n", srv.Path, cli.V4)
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFtpnft(t, "install", "--config", cfg)
	mustFetch(t, cli, PASV, srv.V4, 2121, files)
	mustFetch(t, cli, EPRT, srv.V6, 2121, files)
	st, _ := readStatus(t, "--config", cfg)
	if !st.Matches || len(st.Sources) != 2 || st.MaxConnPerSource != 5 {
		t.Fatalf("status --config: %+v", st)
	}
	if out := mustFtpnft(t, "uninstall", "--config", cfg); !strings.Contains(out, "removed") {
		t.Fatalf("uninstall --config: %q", out)
	}
}

// TestConcurrentInstalls races installs of two configurations in one
// namespace, through the library (goroutines: tight timing) and the binary:
// every round starts without the table, and ends with exactly one of the
// two rulesets, whole, never a mix or duplicated rules.
func TestConcurrentInstalls(t *testing.T) {
	RequireRoot(t)
	ns := NewHost(t, "race")
	ref := NewHost(t, "ref")
	var rulesets []*nft.Ruleset
	var want []string
	for _, ports := range [][]uint16{{21}, {2121, 990}} {
		cfg := nft.DefaultConfig()
		cfg.Ports = ports
		rs, err := nft.Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rulesets = append(rulesets, rs)
		if _, err := nft.Apply(context.Background(), rs, nft.WithNetNS(ref.Path)); err != nil {
			t.Fatal(err)
		}
		want = append(want, ref.MustExec(t, "nft", "list", "table", "inet", "ftpnft"))
	}
	check := func(round int) {
		t.Helper()
		got := ns.MustExec(t, "nft", "list", "table", "inet", "ftpnft")
		if got != want[0] && got != want[1] {
			t.Fatalf("round %d: the table is neither configuration:\n%s", round, got)
		}
	}
	for round := range 30 {
		if _, err := nft.Remove(context.Background(), nft.DefaultTable, nft.WithNetNS(ns.Path)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := nft.Apply(context.Background(), rulesets[i%2], nft.WithNetNS(ns.Path)); err != nil && !errors.Is(err, nft.ErrConcurrent) {
					t.Errorf("round %d: Apply: %v", round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		check(round)
	}
	// The binary, too.
	mustFtpnft(t, "uninstall", "--netns", ns.Path)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, stderr := ftpnft(t, "install", "--netns", ns.Path, "--ports", []string{"21", "2121,990"}[i%2])
			if code != 0 && !strings.Contains(stderr, "changed while it was being read") {
				t.Errorf("install: exit %d: %s", code, stderr)
			}
		}()
	}
	wg.Wait()
	check(-1)
}

// TestCoexistence: a firewalld-like inet table with its own drop policy
// (admitting established and related traffic and the FTP port) and an
// iptables-nft table live next to ftpnft's. FTP works where both policies
// allow it, because ftpnft's helper makes the data connections RELATED for
// the other table too; a failed install and an uninstall leave the other
// tables byte-identical; without ftpnft the other policy alone blocks
// passive data connections.
func TestCoexistence(t *testing.T) {
	RequireRoot(t)
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	srv.NftApply(t, `table inet firewalld_like {
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy drop;
		ct state established,related accept
		iifname "lo" accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
		tcp dport 21 accept
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr 198.51.100.7 counter drop
	}
}
`)
	foreign := foreignTables(t, srv)

	mustFtpnft(t, "install", "--netns", srv.Path)
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)

	// A batch the kernel rejects (an unknown helper type) changes nothing,
	// theirs nor ours.
	all := srv.MustExec(t, "nft", "-a", "list", "ruleset")
	broken, err := nft.Build(nft.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	broken.Helpers[0].Type = "no-such-helper"
	broken.Chains[0].Rules = broken.Chains[0].Rules[:0] // differ, so that a batch is sent
	if _, err := nft.Apply(context.Background(), broken, nft.WithNetNS(srv.Path)); err == nil {
		t.Fatal("the kernel accepted an unknown helper type")
	}
	if after := srv.MustExec(t, "nft", "-a", "list", "ruleset"); after != all {
		t.Fatalf("a failed install changed the ruleset:\n--- before\n%s\n--- after\n%s", all, after)
	}

	mustFtpnft(t, "uninstall", "--netns", srv.Path)
	if got := foreignTables(t, srv); got != foreign {
		t.Fatalf("foreign tables changed:\n--- before\n%s\n--- after\n%s", foreign, got)
	}
	// Negative control: their policy alone admits the control connection
	// but not the data connection, which nothing marks RELATED.
	mustBlock(t, cli, PASV, srv.V4, 21)
}
