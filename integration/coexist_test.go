//go:build netns

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// doctorJSON runs `ftpnft doctor --json` in srv and returns its exit code
// and checks.
func doctorJSON(t *testing.T, srv *Host, args ...string) (int, []map[string]string) {
	t.Helper()
	code, stdout, stderr := ftpnft(t, append([]string{"doctor", "--json", "--netns", srv.Path}, args...)...)
	var out struct {
		Checks []map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("doctor --json: %v\n%s%s", err, stdout, stderr)
	}
	return code, out.Checks
}

// failed lists the details of doctor's failed checks.
func failed(checks []map[string]string) string {
	var b strings.Builder
	for _, c := range checks {
		if c["status"] == "fail" {
			b.WriteString(c["detail"] + " | fix: " + c["fix"] + "\n")
		}
	}
	return b.String()
}

// An iptables-nft INPUT chain as classic scripts write it (policy DROP,
// ESTABLISHED and port 21 accepted, no RELATED), next to ftpnft: FTP's data
// connections are dropped by the other table. install warns naming INPUT,
// doctor fails naming it; once the rule it suggests is added, doctor passes
// and FTP works. The opposite case first: without the iptables rules FTP
// works and doctor passes.
func TestIptablesScriptNextToFtpnft(t *testing.T) {
	requireTool(t, "iptables-nft")
	files := testFiles(t)
	srv, cli := NewPair(t)
	StartVsftpd(t, srv, 21, files)
	mustFtpnft(t, "install", "--netns", srv.Path)
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	if code, checks := doctorJSON(t, srv); code != 0 {
		t.Fatalf("doctor on a clean namespace: exit %d\n%s", code, failed(checks))
	}

	for _, rule := range [][]string{
		{"-P", "INPUT", "DROP"},
		{"-A", "INPUT", "-m", "state", "--state", "ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "21", "-j", "ACCEPT"},
		{"-A", "INPUT", "-i", "lo", "-j", "ACCEPT"},
	} {
		srv.MustExec(t, "iptables-nft", rule...)
	}
	code, stdout, stderr := ftpnft(t, "install", "--netns", srv.Path, "--ports", "21,2121")
	if code != 0 || !strings.Contains(stderr, "warning: ip filter INPUT (hook input priority 0, iptables-nft) drops RELATED data connections") {
		t.Fatalf("install next to the script: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "drops new control connections to port 2121") || strings.Contains(stderr, "port 21:") {
		t.Errorf("install's warnings about the control ports:\n%s", stderr)
	}
	mustFtpnft(t, "install", "--netns", srv.Path)
	mustBlock(t, cli, PASV, srv.V4, 21)
	code, checks := doctorJSON(t, srv)
	if code != 1 || !strings.Contains(failed(checks), "ip filter INPUT (hook input priority 0, iptables-nft) drops RELATED data connections") {
		t.Fatalf("doctor next to the script: exit %d\n%s", code, failed(checks))
	}
	if _, out, _ := ftpnft(t, "doctor", "--netns", srv.Path); !strings.Contains(out, "[FAIL] other firewall: ip filter INPUT") {
		t.Errorf("doctor's text:\n%s", out)
	}

	// The fix doctor gives, as it gives it.
	fix := ""
	for _, c := range checks {
		if c["status"] == "fail" {
			fix = c["fix"]
		}
	}
	args := strings.Fields(fix)
	if len(args) < 2 || args[0] != "iptables" {
		t.Fatalf("fix %q is not an iptables command", fix)
	}
	srv.MustExec(t, "iptables-nft", args[1:]...)
	if code, checks := doctorJSON(t, srv); code != 0 {
		t.Fatalf("doctor after the fix: exit %d\n%s", code, failed(checks))
	}
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, PORT, srv.V4, 21, files)
}

// privateEtc gives h a copy of /etc/NAME of its own (ip netns exec
// bind-mounts /etc/netns/NAMESPACE/NAME over /etc/NAME), removed in
// cleanup, with /etc/netns itself when this made it.
func privateEtc(t *testing.T, h *Host, name string) {
	t.Helper()
	_, err := os.Stat("/etc/netns")
	made := os.IsNotExist(err)
	dir := filepath.Join("/etc/netns", h.Name)
	t.Cleanup(func() {
		os.RemoveAll(dir)
		if made {
			os.Remove("/etc/netns") // only when empty: another test may use it
		}
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/etc/"+name, filepath.Join(dir, name)).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/%s: %v\n%s", name, err, out)
	}
}

// ufwHost gives h a private copy of /etc/ufw (ip netns exec bind-mounts
// /etc/netns/NAME/ufw over /etc/ufw), removed in cleanup.
func ufwHost(t *testing.T, h *Host) {
	t.Helper()
	requireTool(t, "ufw")
	privateEtc(t, h, "ufw")
}

// A real ufw (its own rules, in the namespace) that allows FTP's port and
// SSH: with --policy accept ftpnft only adds the helper, FTP works and
// doctor passes; with --policy drop install warns that ftpnft's policy
// drops what ufw admits (SSH).
func TestUfwNextToFtpnft(t *testing.T) {
	files := testFiles(t)
	srv, cli := NewPair(t)
	ufwHost(t, srv)
	StartVsftpd(t, srv, 21, files)
	srv.MustExec(t, "ufw", "allow", "21/tcp")
	srv.MustExec(t, "ufw", "allow", "22/tcp")
	srv.MustExec(t, "ufw", "--force", "enable")

	code, stdout, stderr := ftpnft(t, "install", "--netns", srv.Path, "--policy", "accept")
	if code != 0 || strings.Contains(stderr, "warning") {
		t.Fatalf("install --policy accept next to ufw: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, mode := range Modes {
		if mode == PASV || mode == PORT {
			mustFetch(t, cli, mode, srv.V4, 21, files)
		}
	}
	mustFetch(t, cli, EPSV, srv.V6, 21, files)
	if code, checks := doctorJSON(t, srv); code != 0 {
		t.Fatalf("doctor next to ufw: exit %d\n%s", code, failed(checks))
	}

	code, _, stderr = ftpnft(t, "install", "--netns", srv.Path, "--policy", "drop")
	if code != 0 || !strings.Contains(stderr, "ip filter INPUT (hook input priority 0, ufw) admits new connections to tcp/22, which ftpnft's input chain (policy drop) drops; fix: add --allow tcp/22") {
		t.Fatalf("install --policy drop next to ufw: exit %d\n%s", code, stderr)
	}

	// The opposite case: ufw without port 21 drops the control connections.
	srv.MustExec(t, "ufw", "delete", "allow", "21/tcp")
	code, checks := doctorJSON(t, srv, "--policy", "accept")
	if code != 1 || !strings.Contains(failed(checks), "ufw) drops new control connections to port 21") {
		t.Fatalf("doctor with ufw closed to FTP: exit %d\n%s", code, failed(checks))
	}
	mustBlock(t, cli, PASV, srv.V4, 21)
}

// status tells what is installed without flags; with flags, which keys
// differ; its exit status says so too.
func TestStatusInstalledAndCompared(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "status")
	if code, out, _ := ftpnft(t, "status", "--netns", h.Path); code != 1 || !strings.Contains(out, "not installed") {
		t.Fatalf("status before install: exit %d\n%s", code, out)
	}
	mustFtpnft(t, "install", "--netns", h.Path, "--policy", "accept", "--allow", "tcp/22")
	code, out, _ := ftpnft(t, "status", "--netns", h.Path)
	if code != 0 || !strings.Contains(out, "table inet ftpnft: installed, matches the configuration it was installed with\n") || !strings.Contains(out, "policy:   accept") || !strings.Contains(out, "allow:    tcp/22") {
		t.Fatalf("status without flags: exit %d\n%s", code, out)
	}
	code, out, _ = ftpnft(t, "status", "--netns", h.Path, "--policy", "drop", "--allow", "tcp/22")
	if code != 1 || !strings.Contains(out, "differs: policy: installed accept, wanted drop") {
		t.Fatalf("status --policy drop: exit %d\n%s", code, out)
	}
	code, out, _ = ftpnft(t, "status", "--netns", h.Path, "--policy", "accept", "--allow", "tcp/22")
	if code != 0 || !strings.Contains(out, "matches the configuration") {
		t.Fatalf("status with the installed flags: exit %d\n%s", code, out)
	}
	// Someone else's table of the same name: no placeholder fields.
	mustFtpnft(t, "uninstall", "--netns", h.Path)
	h.NftApply(t, "add table inet ftpnft\nadd chain inet ftpnft c\n")
	code, out, _ = ftpnft(t, "status", "--netns", h.Path)
	if code != 1 || strings.Contains(out, "related:") || strings.Contains(out, "roles:") {
		t.Fatalf("status of a foreign table: exit %d\n%s", code, out)
	}
}

// firewalldIn runs a real firewalld in h, with a copy of /etc/firewalld of
// its own and a private D-Bus system bus, and returns a function that runs
// firewall-cmd against it. Both daemons are stopped and the copy removed in
// cleanup.
func firewalldIn(t *testing.T, h *Host) (firewallCmd func(args ...string) string) {
	t.Helper()
	requireTool(t, "firewalld")
	requireTool(t, "dbus-daemon")
	privateEtc(t, h, "firewalld")
	tmp := t.TempDir()
	bus := filepath.Join(tmp, "bus")
	config := filepath.Join(tmp, "dbus.conf")
	err := os.WriteFile(config, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/> <allow own="*"/>
    <allow send_type="method_call"/> <allow send_type="signal"/> <allow send_type="method_return"/> <allow send_type="error"/>
    <allow receive_type="method_call"/> <allow receive_type="signal"/> <allow receive_type="method_return"/> <allow receive_type="error"/>
  </policy>
</busconfig>
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// The bus lives in the namespace too, so that the harness stops it
	// with the namespace's other processes.
	h.Start(t, "dbus-daemon", "--config-file="+config, "--nofork", "--nopidfile")
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus}
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(bus); err != nil; _, err = os.Stat(bus) {
		if time.Now().After(deadline) {
			t.Fatal("the private D-Bus did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.StartEnv(t, env, "firewalld", "--nofork", "--nopid")
	firewallCmd = func(args ...string) string {
		t.Helper()
		out, stderr, err := h.ExecEnv(t, env, "firewall-cmd", args...)
		if err != nil {
			t.Fatalf("firewall-cmd %v: %v\n%s%s", args, err, out, stderr)
		}
		return out
	}
	for {
		out, _, _ := h.ExecEnv(t, env, "firewall-cmd", "--state")
		if strings.TrimSpace(out) == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("firewalld did not start within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return firewallCmd
}

// A real firewalld (Debian's package, nftables backend) in the server's
// namespace: with port 21 closed, doctor fails naming firewalld's chain;
// with the service opened by firewall-cmd and ftpnft's --policy accept,
// passive and active FTP work and doctor passes; install --policy drop
// warns that ftpnft's policy drops what firewalld admits.
func TestFirewalldNextToFtpnft(t *testing.T) {
	files := testFiles(t)
	srv, cli := NewPair(t)
	firewallCmd := firewalldIn(t, srv)
	StartVsftpd(t, srv, 21, files)

	code, _, stderr := ftpnft(t, "install", "--netns", srv.Path, "--policy", "accept")
	if code != 0 || !strings.Contains(stderr, "inet firewalld filter_INPUT (hook input priority 10, firewalld) drops new control connections to port 21") {
		t.Fatalf("install next to a closed firewalld: exit %d\n%s", code, stderr)
	}
	mustBlock(t, cli, PASV, srv.V4, 21)
	code, checks := doctorJSON(t, srv)
	if code != 1 || !strings.Contains(failed(checks), "firewalld filter_INPUT") || !strings.Contains(failed(checks), "firewall-cmd --add-port=21/tcp") {
		t.Fatalf("doctor with port 21 closed in firewalld: exit %d\n%s", code, failed(checks))
	}

	firewallCmd("--add-service=ftp")
	mustFetch(t, cli, PASV, srv.V4, 21, files)
	mustFetch(t, cli, PORT, srv.V4, 21, files)
	mustFetch(t, cli, EPSV, srv.V6, 21, files)
	if code, checks := doctorJSON(t, srv); code != 0 {
		t.Fatalf("doctor with FTP open in firewalld: exit %d\n%s", code, failed(checks))
	}
	code, _, stderr = ftpnft(t, "install", "--netns", srv.Path, "--policy", "drop")
	if code != 0 || !strings.Contains(stderr, "firewalld) admits new connections to tcp/22, which ftpnft's input chain (policy drop) drops") {
		t.Fatalf("install --policy drop next to firewalld: exit %d\n%s", code, stderr)
	}
}

// Tables of iptables-legacy are no nftables tables: ftpnft cannot read
// their rules, and says so (doctor warns, install warns on stderr); a
// namespace without them is ok.
func TestIptablesLegacyIsNamed(t *testing.T) {
	requireTool(t, "iptables-legacy")
	h := NewHost(t, "legacy")
	mustFtpnft(t, "install", "--netns", h.Path)
	_, checks := doctorJSON(t, h)
	status := func() string {
		for _, c := range checks {
			if c["name"] == "iptables-legacy" {
				return c["status"] + ": " + c["detail"]
			}
		}
		return ""
	}
	if got := status(); got != "ok: no iptables-legacy tables in use" {
		t.Fatalf("without legacy tables: %q", got)
	}
	h.MustExec(t, "iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "2", "-j", "ACCEPT")
	_, checks = doctorJSON(t, h)
	if got := status(); !strings.HasPrefix(got, "warn: iptables-legacy tables in use (ip filter)") {
		t.Fatalf("with a legacy table: %q", got)
	}
	if _, _, stderr := ftpnft(t, "install", "--netns", h.Path); !strings.Contains(stderr, "warning: iptables-legacy tables in use (ip filter)") {
		t.Fatalf("install with a legacy table: %s", stderr)
	}
}
