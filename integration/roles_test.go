//go:build netns

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/ftpnft/ftpnft/nft"
)

// mustFetch lists the root and downloads big.bin from addr:port with curl in
// mode, and fails the test unless the listing names big.bin and the download
// is byte-identical to files["big.bin"].
func mustFetch(t *testing.T, cli *Host, mode Mode, addr netip.Addr, port int, files map[string][]byte) {
	t.Helper()
	list, err := Curl(t, cli, mode, URL(addr, port, "/"), okTimeout)
	if err != nil || !bytes.Contains(list, []byte("big.bin")) {
		t.Fatalf("listing: %v\n%s", err, list)
	}
	got, err := Curl(t, cli, mode, URL(addr, port, "/big.bin"), okTimeout)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(got, files["big.bin"]) {
		t.Fatalf("download: got %d bytes, want %d identical bytes", len(got), len(files["big.bin"]))
	}
}

// mustBlock fails the test if a listing from addr:port in mode succeeds.
func mustBlock(t *testing.T, cli *Host, mode Mode, addr netip.Addr, port int) {
	t.Helper()
	list, err := Curl(t, cli, mode, URL(addr, port, "/"), blockedTimeout)
	if err == nil || bytes.Contains(list, []byte("big.bin")) {
		t.Fatalf("%s listing succeeded without the helper:\n%s", mode, list)
	}
	t.Logf("blocked as expected: %v", err)
}

// target is an address to reach an FTP server at, with the modes to use.
type target struct {
	name  string
	addr  netip.Addr
	modes []Mode
}

// targets are the IPv4 and IPv6 addresses (v4, v6) with the modes clients
// can use on each: PASV and PORT carry IPv4 addresses only (RFC 959); over
// IPv6 clients use EPSV and EPRT (RFC 2428).
func targets(v4, v6 netip.Addr) []target {
	return []target{
		{"ipv4", v4, []Mode{PASV, EPSV, PORT, EPRT}},
		{"ipv6", v6, []Mode{EPSV, EPRT}},
	}
}

// fetchAll runs mustFetch for every port, target and mode, as subtests.
func fetchAll(t *testing.T, cli *Host, ports []int, tgts []target, files map[string][]byte) {
	t.Helper()
	for _, port := range ports {
		for _, tg := range tgts {
			for _, mode := range tg.modes {
				t.Run(fmt.Sprintf("port%d/%s/%s", port, tg.name, mode), func(t *testing.T) {
					mustFetch(t, cli, mode, tg.addr, port, files)
				})
			}
		}
	}
}

// blockAll runs mustBlock for each target and mode on port, in parallel
// subtests of one "without-helper" subtest.
func blockAll(t *testing.T, cli *Host, port int, tgts []target) {
	t.Helper()
	t.Run("without-helper", func(t *testing.T) {
		for _, tg := range tgts {
			for _, mode := range tg.modes {
				t.Run(fmt.Sprintf("%s/%s", tg.name, mode), func(t *testing.T) {
					t.Parallel()
					mustBlock(t, cli, mode, tg.addr, port)
				})
			}
		}
	})
}

// configOf builds the nft.Config that ftpnft's flags describe, for the
// negative control (withoutHelper) and for status comparisons.
func configOf(t *testing.T, roles []nft.Role, ports []uint16, dnat []string, masquerade []string) nft.Config {
	t.Helper()
	cfg := nft.DefaultConfig()
	cfg.Roles, cfg.Ports, cfg.Masquerade = roles, ports, masquerade
	for _, d := range dnat {
		fwd, err := nft.ParseDNAT(d)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DNAT = append(cfg.DNAT, fwd)
	}
	return cfg
}

// readStatus runs `ftpnft status --json` with args and decodes it.
func readStatus(t *testing.T, args ...string) (nft.Status, map[string]uint64) {
	t.Helper()
	js := mustFtpnft(t, append([]string{"status", "--json"}, args...)...)
	var st nft.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, c := range st.Counters {
		counts[c.Chain+": "+c.Rule] = c.Packets
	}
	return st, counts
}

// flagArgs turns a config's roles, ports, DNAT and masquerade into flags.
func flagArgs(cfg nft.Config) []string {
	var roles, ports []string
	for _, r := range cfg.Roles {
		roles = append(roles, string(r))
	}
	for _, p := range cfg.Ports {
		ports = append(ports, fmt.Sprint(p))
	}
	args := []string{"--role", strings.Join(roles, ","), "--ports", strings.Join(ports, ",")}
	for _, d := range cfg.DNAT {
		args = append(args, "--dnat", d.String())
	}
	for _, m := range cfg.Masquerade {
		args = append(args, "--masquerade", m)
	}
	return args
}

// TestRouterPortForwarding: an outside client reaches an inner vsftpd (which
// knows nothing about NAT: no pasv_address) only through the router's DNAT
// of ports 21 and 2121, over IPv4 and IPv6, passive and active. The outside
// host has no route to the inner network, so a passive listing works only if
// nf_nat_ftp rewrote the inner address in the PASV reply. Negative control:
// the same ruleset without the helper on the router, and every mode fails.
func TestRouterPortForwarding(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	r := NewRouted(t, false)
	files := testFiles(t)
	StartVsftpd(t, r.Inner, 21, files)
	StartVsftpd(t, r.Inner, 2121, files)
	cfg := configOf(t, []nft.Role{nft.RoleRouter}, []uint16{21, 2121}, []string{
		"21=203.0.113.2:21", "2121=203.0.113.2:2121", "21=[2001:db8:113::2]:21", "2121=[2001:db8:113::2]:2121",
	}, nil)
	args := append([]string{"--netns", r.Router.Path}, flagArgs(cfg)...)
	mustFtpnft(t, append([]string{"install"}, args...)...)

	outside := targets(r.RouterOutside[0], r.RouterOutside[1])
	fetchAll(t, r.Outside, []int{21, 2121}, outside, files)
	t.Run("lftp", func(t *testing.T) {
		for _, mode := range []Mode{PASV, PORT} {
			out, err := Lftp(t, r.Outside, mode, URL(r.RouterOutside[0], 2121, "/hello.txt"), okTimeout)
			if err != nil || !bytes.Equal(out, files["hello.txt"]) {
				t.Fatalf("lftp %s: %v\n%q", mode, err, out)
			}
		}
	})

	st, counts := readStatus(t, args...)
	if !st.Matches || !slices.Equal(st.Roles, []nft.Role{nft.RoleRouter}) || !slices.Equal(st.DNAT, cfg.DNAT) {
		t.Fatalf("status: %+v", st)
	}
	for _, rule := range []string{
		"dstnat: dnat 21=203.0.113.2:21", "dstnat: dnat 2121=[2001:db8:113::2]:2121",
		"prerouting: assign ftp helper dnat to 203.0.113.2:21", "forward: related ftp data",
		"forward: ftp control dnat to [2001:db8:113::2]:2121",
	} {
		if counts[rule] == 0 {
			t.Errorf("counter %q is zero: %v", rule, counts)
		}
	}

	mustFtpnft(t, "uninstall", "--netns", r.Router.Path)
	r.Router.NftApply(t, withoutHelper(t, cfg))
	blockAll(t, r.Outside, 21, []target{
		{"ipv4", r.RouterOutside[0], []Mode{PASV, PORT}},
		{"ipv6", r.RouterOutside[1], []Mode{EPSV, EPRT}},
	})
}

// TestRouterForwarding: FTP routed (without NAT) through a router with a
// forward policy of drop, to servers on ports 21 and 2121; negative control
// without the helper.
func TestRouterForwarding(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	r := NewRouted(t, true)
	files := testFiles(t)
	StartVsftpd(t, r.Inner, 21, files)
	StartVsftpd(t, r.Inner, 2121, files)
	cfg := configOf(t, []nft.Role{nft.RoleRouter}, []uint16{21, 2121}, nil, nil)
	mustFtpnft(t, append([]string{"install", "--netns", r.Router.Path}, flagArgs(cfg)...)...)

	inner := targets(r.Inner.V4, r.Inner.V6)
	fetchAll(t, r.Outside, []int{21, 2121}, inner, files)
	// A connection to a port that is not FTP is dropped by the forward
	// policy: curl times out (exit 28) instead of being refused (exit 7)
	// by the inner host, where nothing listens on port 8080.
	_, _, err := r.Outside.Exec(t, "curl", "-sS", "--max-time", "3", "http://"+r.Inner.V4.String()+":8080/")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 28 {
		t.Fatalf("connection to a non-FTP port through the router: %v, want a timeout (curl exit 28)", err)
	}

	mustFtpnft(t, "uninstall", "--netns", r.Router.Path)
	r.Router.NftApply(t, withoutHelper(t, cfg))
	blockAll(t, r.Outside, 2121, []target{
		{"ipv4", r.Inner.V4, []Mode{PASV, PORT}},
		{"ipv6", r.Inner.V6, []Mode{EPSV, EPRT}},
	})
}

// TestRouterMasquerade: inner clients reach an outside server through the
// router's masquerade, and active mode works because nf_nat_ftp rewrites the
// inner address in PORT/EPRT. The outside server has no route back to the
// inner network. Negative control: without the helper every mode fails
// (active: nothing rewrites PORT/EPRT; passive: the forward policy drops the
// unexpected data connection).
func TestRouterMasquerade(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	r := NewRouted(t, false)
	files := testFiles(t)
	StartVsftpd(t, r.Outside, 21, files)
	StartVsftpd(t, r.Outside, 2121, files)
	cfg := configOf(t, []nft.Role{nft.RoleRouter}, []uint16{21, 2121}, nil, []string{r.RouterOutsideIf})
	args := append([]string{"--netns", r.Router.Path}, flagArgs(cfg)...)
	mustFtpnft(t, append([]string{"install"}, args...)...)

	outside := targets(r.Outside.V4, r.Outside.V6)
	fetchAll(t, r.Inner, []int{21, 2121}, outside, files)
	st, counts := readStatus(t, args...)
	if !st.Matches || !slices.Equal(st.Masquerade, cfg.Masquerade) || counts["srcnat: masquerade eth-out"] == 0 {
		t.Fatalf("status: %+v", st)
	}

	mustFtpnft(t, "uninstall", "--netns", r.Router.Path)
	r.Router.NftApply(t, withoutHelper(t, cfg))
	// Passive fails too: the forward policy drops the inner client's data
	// connection unless the helper expected it.
	blockAll(t, r.Inner, 21, []target{
		{"ipv4", r.Outside.V4, []Mode{PASV, PORT, EPRT}},
		{"ipv6", r.Outside.V6, []Mode{EPSV, EPRT}},
	})
}

// TestClientRole: a host that is an FTP client, with an input policy of
// drop, downloads from servers on ports 21 and 2121 in every mode. Active
// mode works because the helper, assigned in the output hook, expects the
// server's data connection. Negative control: without the helper active
// mode fails (and passive, outbound only, still works).
func TestClientRole(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)
	StartVsftpd(t, srv, 2121, files)
	cfg := configOf(t, []nft.Role{nft.RoleClient}, []uint16{21, 2121}, nil, nil)
	args := append([]string{"--netns", cli.Path}, flagArgs(cfg)...)
	mustFtpnft(t, append([]string{"install"}, args...)...)

	fetchAll(t, cli, []int{21, 2121}, targets(srv.V4, srv.V6), files)
	st, counts := readStatus(t, args...)
	if !st.Matches || !slices.Equal(st.Roles, []nft.Role{nft.RoleClient}) || st.Policy != nft.PolicyDrop ||
		counts["output: assign ftp helper outbound port 2121"] == 0 || counts["input: related ftp data"] == 0 {
		t.Fatalf("status: %+v\ncounters %v", st, counts)
	}
	// A client-role host admits no inbound FTP control connections, even to
	// a server of its own.
	// curl must time out (exit 28): refused would mean nothing listened.
	StartVsftpd(t, cli, 21, files)
	_, err := Curl(t, srv, PASV, URL(cli.V4, 21, "/"), blockedTimeout)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 28 {
		t.Fatalf("inbound control connection to a client-role host: %v, want a timeout (curl exit 28)", err)
	}

	mustFtpnft(t, "uninstall", "--netns", cli.Path)
	cli.NftApply(t, withoutHelper(t, cfg))
	t.Run("without-helper/passive-still-works", func(t *testing.T) {
		mustFetch(t, cli, EPSV, srv.V6, 2121, files)
	})
	blockAll(t, cli, 2121, []target{
		{"ipv4", srv.V4, []Mode{PORT, EPRT}},
		{"ipv6", srv.V6, []Mode{EPRT}},
	})
}
