//go:build netns

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

const (
	// namePrefix starts the name of every namespace the harness creates, so
	// leftovers are easy to find with `ip netns list`.
	namePrefix = "ftpnft-"
	// netnsDir is where `ip netns add` bind-mounts named namespaces.
	netnsDir = "/var/run/netns"

	execTimeout  = 60 * time.Second      // bound for Exec and MustExec
	readyTimeout = 10 * time.Second      // links up, vsftpd listening
	killTimeout  = 10 * time.Second      // processes gone after SIGKILL
	pollInterval = 20 * time.Millisecond // readiness and teardown polling
	clientGrace  = 5 * time.Second       // hard stop beyond a client's own timeout
	waitDelay    = 2 * time.Second       // see exec.Cmd.WaitDelay
	maxErrStderr = 8 << 10               // stderr bytes quoted in an error
	ifNameMax    = 15                    // IFNAMSIZ - 1
	connectLimit = 3                     // curl --connect-timeout, seconds
)

// ErrWrongMode reports that an FTP client did not use the requested
// data-connection mode: it fell back to another command (curl retries PASV
// after a failed EPSV, PORT after a failed EPRT), it cannot send the
// requested command on this address family (curl and lftp always use EPSV and
// EPRT over IPv6; lftp never sends EPRT over IPv4), or it sent no
// data-connection command at all. Curl and Lftp wrap it; test with errors.Is.
var ErrWrongMode = errors.New("FTP client did not use the requested data-connection mode")

// RequireRoot skips the test when it does not run as root or when network
// namespaces cannot be created, giving the reason. When the environment
// variable CI is "true" it calls t.Fatal instead, so a misconfigured CI
// runner cannot pass by skipping everything. The probe runs once per process.
func RequireRoot(t testing.TB) {
	t.Helper()
	rootProbe.once.Do(func() { rootProbe.reason = probeNamespaces() })
	if rootProbe.reason != "" {
		skipOrFatal(t, rootProbe.reason)
	}
}

var rootProbe struct {
	once   sync.Once
	reason string // why namespace tests cannot run; empty if they can
}

// probeNamespaces creates and deletes a named namespace and returns why that
// failed, or "" on success.
func probeNamespaces() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("network namespace tests need root (euid is %d)", euid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Sprintf("network namespace tests need ip from iproute2: %v", err)
	}
	name := namePrefix + randomHex() + "-probe"
	if _, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "add", name); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v", err)
	}
	if _, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "del", name); err != nil {
		return fmt.Sprintf("cannot delete probe namespace: %v", err)
	}
	return ""
}

// skipOrFatal skips the test with reason, or fails it under CI=true.
func skipOrFatal(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", reason)
	}
	t.Skip(reason)
}

// requireTool skips (or, under CI=true, fails) the test when the program name
// is not installed.
func requireTool(t testing.TB, name string) {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath(name); err != nil {
		skipOrFatal(t, fmt.Sprintf("%s is not installed: %v", name, err))
	}
}

// Host is one throwaway network namespace. Processes run in it through
// `ip netns exec`; the test process itself never enters it.
type Host struct {
	Name string     // namespace name as in `ip netns list`: "ftpnft-<random hex>-<role>"
	Path string     // bind mount of the namespace: /var/run/netns/<Name>
	V4   netip.Addr // this host's IPv4 address on its first link; zero if none
	V6   netip.Addr // this host's IPv6 address on its first link; zero if none

	role    string
	mu      sync.Mutex
	procs   []*proc // started with Start, stopped at teardown at the latest
	deleted bool    // removed early by Delete
}

// Delete removes the namespace's name now (`ip netns del`), as an admin
// would while something still watches it. Processes in it keep running until
// teardown, which then skips the deletion.
func (h *Host) Delete(t testing.TB) {
	t.Helper()
	if _, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "del", h.Name); err != nil {
		t.Fatalf("delete %s: %v", h.Name, err)
	}
	h.mu.Lock()
	h.deleted = true
	h.mu.Unlock()
}

// NewHost creates a network namespace for role (lower-case letters, digits and
// dashes; it names the namespace and the peer's interface) with lo up and IPv6
// duplicate address detection off, so addresses are usable at once. It calls
// RequireRoot first. The namespace is deleted in t.Cleanup, also when the test
// fails, after every process in it has been killed: those the harness started
// and any others `ip netns pids` finds.
func NewHost(t testing.TB, role string) *Host {
	t.Helper()
	RequireRoot(t)
	if !validRole(role) {
		t.Fatalf("NewHost: role %q: want 1 to 11 characters of a-z, 0-9 and '-'", role)
	}
	name := namePrefix + randomHex() + "-" + role
	h := &Host{Name: name, Path: filepath.Join(netnsDir, name), role: role}
	if _, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "add", name); err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { h.teardown(t) })

	h.mustIP(t, "link", "set", "lo", "up")
	// Without DAD, link-local addresses are usable as soon as the link is up
	// instead of one to two seconds later; "nodad" on each address does the
	// same for the global ones.
	h.MustExec(t, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return h
}

// validRole reports whether role fits an interface name "eth-<role>".
func validRole(role string) bool {
	if role == "" || len(role) > ifNameMax-len("eth-") {
		return false
	}
	for _, r := range role {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// randomHex returns 8 random hex digits.
func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Link joins a and b with a veth pair and assigns the addresses, given as
// prefixes such as "192.0.2.1/24" or "2001:db8:f7::1/64" (IPv6 ones with
// nodad). The interface in a is named "eth-<b's role>" and the one in b
// "eth-<a's role>", so each host can link to a given role once. The pair is
// created directly inside the namespaces and never appears in the root
// namespace. Link returns when both ends are operationally up and no IPv6
// address is tentative. It sets V4 and V6 of a host from the first address of
// each family if they are still zero.
func Link(t testing.TB, a *Host, aAddrs []string, b *Host, bAddrs []string) {
	t.Helper()
	if a == b {
		t.Fatalf("Link: cannot link %s to itself", a.Name)
	}
	aIf, bIf := "eth-"+b.role, "eth-"+a.role
	a.mustIP(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	a.addAddrs(t, aIf, aAddrs)
	b.addAddrs(t, bIf, bAddrs)
	a.mustIP(t, "link", "set", aIf, "up")
	b.mustIP(t, "link", "set", bIf, "up")

	// A veth end reports carrier at once, but its operstate follows through
	// the kernel's linkwatch, up to a second later.
	deadline := time.Now().Add(readyTimeout)
	for _, end := range []struct {
		h  *Host
		If string
	}{{a, aIf}, {b, bIf}} {
		for {
			why := end.h.linkNotReady(t, end.If)
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Link: %s in %s not ready after %v: %s", end.If, end.h.Name, readyTimeout, why)
			}
			time.Sleep(pollInterval)
		}
	}
}

// addAddrs assigns prefixes to interface dev and remembers the first address
// of each family in V4 and V6.
func (h *Host) addAddrs(t testing.TB, dev string, prefixes []string) {
	t.Helper()
	for _, s := range prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("Link: address %q for %s: %v", s, h.Name, err)
		}
		args := []string{"addr", "add", p.String(), "dev", dev}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		h.mustIP(t, args...)
		switch {
		case p.Addr().Is4() && !h.V4.IsValid():
			h.V4 = p.Addr()
		case p.Addr().Is6() && !h.V6.IsValid():
			h.V6 = p.Addr()
		}
	}
}

// linkNotReady says why dev is not usable yet, or returns "" if it is.
func (h *Host) linkNotReady(t testing.TB, dev string) string {
	t.Helper()
	out := h.mustIP(t, "-j", "link", "show", "dev", dev)
	var links []struct {
		Operstate string `json:"operstate"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("Link: cannot parse `ip -j link show dev %s` in %s (%v): %s", dev, h.Name, err, out)
	}
	if links[0].Operstate != "UP" {
		return "operstate " + links[0].Operstate
	}
	if tent := strings.TrimSpace(h.mustIP(t, "-6", "addr", "show", "dev", dev, "tentative")); tent != "" {
		return "tentative IPv6 addresses: " + tent
	}
	return ""
}

// NewPair creates a server host "srv" and a client host "cli" joined by a veth
// pair: the server has 192.0.2.1/24 and 2001:db8:f7::1/64, the client
// 192.0.2.2/24 and 2001:db8:f7::2/64, also set in V4 and V6.
func NewPair(t testing.TB) (server, client *Host) {
	t.Helper()
	server = NewHost(t, "srv")
	client = NewHost(t, "cli")
	Link(t, server, []string{"192.0.2.1/24", "2001:db8:f7::1/64"},
		client, []string{"192.0.2.2/24", "2001:db8:f7::2/64"})
	return server, client
}

// Routed is three hosts in a line: an outside host, a router with IP
// forwarding on, and an inner host whose default routes point at the router.
//
//	out 198.51.100.2/24      rtr eth-out 198.51.100.1/24      in 203.0.113.2/24
//	    2001:db8:51::2/64  ---   2001:db8:51::1/64          ---   2001:db8:113::2/64
//	    (eth-rtr)              rtr eth-in  203.0.113.1/24         (eth-rtr)
//	                               2001:db8:113::1/64
//
// The outside host knows no route to the inner network unless NewRouted
// is asked for one: what reaches the inner host from outside then does so
// only through the router's NAT.
type Routed struct {
	Outside, Router, Inner *Host
	// RouterOutside and RouterInside are the router's addresses on each
	// side (IPv4 and IPv6).
	RouterOutside, RouterInside [2]netip.Addr
	// RouterOutsideIf is the router's interface towards the outside host.
	RouterOutsideIf string
}

// NewRouted creates the three hosts of [Routed]. With outsideRoutes the
// outside host also routes the inner network through the router (plain
// routing, no NAT needed).
func NewRouted(t testing.TB, outsideRoutes bool) *Routed {
	t.Helper()
	r := &Routed{
		Outside:         NewHost(t, "out"),
		Router:          NewHost(t, "rtr"),
		Inner:           NewHost(t, "in"),
		RouterOutside:   [2]netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:51::1")},
		RouterInside:    [2]netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:113::1")},
		RouterOutsideIf: "eth-out",
	}
	Link(t, r.Outside, []string{"198.51.100.2/24", "2001:db8:51::2/64"},
		r.Router, []string{"198.51.100.1/24", "2001:db8:51::1/64"})
	Link(t, r.Router, []string{"203.0.113.1/24", "2001:db8:113::1/64"},
		r.Inner, []string{"203.0.113.2/24", "2001:db8:113::2/64"})
	r.Router.MustExec(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	r.Inner.mustIP(t, "route", "add", "default", "via", r.RouterInside[0].String())
	r.Inner.mustIP(t, "-6", "route", "add", "default", "via", r.RouterInside[1].String())
	if outsideRoutes {
		r.Outside.mustIP(t, "route", "add", "203.0.113.0/24", "via", r.RouterOutside[0].String())
		r.Outside.mustIP(t, "-6", "route", "add", "2001:db8:113::/64", "via", r.RouterOutside[1].String())
	}
	return r
}

// ExecEnv is Exec with extra environment variables ("KEY=VALUE").
func (h *Host) ExecEnv(t testing.TB, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	o, e, err := h.run(execTimeout, nil, env, name, args...)
	return string(o), string(e), err
}

// Exec runs name with args inside the namespace (`ip netns exec`), waits at
// most 60 seconds and returns its stdout and stderr. The error, if any, names
// the namespace and the command, wraps the *exec.ExitError (or
// context.DeadlineExceeded on timeout) and quotes stderr. Exec does not fail
// the test, so it also serves negative checks.
func (h *Host) Exec(t testing.TB, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	o, e, err := h.run(execTimeout, nil, nil, name, args...)
	return string(o), string(e), err
}

// MustExec is Exec that fails the test with t.Fatal on error, and returns
// stdout.
func (h *Host) MustExec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, _, err := h.Exec(t, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// NftApply runs `nft -f -` in the namespace with ruleset as input and fails
// the test if nft rejects it. Any nft script works, e.g. "delete table inet x".
// For a negative check run nft through Exec instead.
func (h *Host) NftApply(t testing.TB, ruleset string) {
	t.Helper()
	if _, _, err := h.run(execTimeout, strings.NewReader(ruleset), nil, "nft", "-f", "-"); err != nil {
		t.Fatalf("NftApply: %v\nruleset:\n%s", err, ruleset)
	}
}

// NftList returns the output of `nft list ruleset` in the namespace.
func (h *Host) NftList(t testing.TB) string {
	t.Helper()
	return h.MustExec(t, "nft", "list", "ruleset")
}

// mustIP runs `ip -n <namespace> args...` from the root namespace and returns
// its stdout, failing the test on error.
func (h *Host) mustIP(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := runCommand(execTimeout, nil, nil, "ip", append([]string{"-n", h.Name}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// run runs name inside the namespace with a timeout, optional stdin and extra
// environment variables.
func (h *Host) run(timeout time.Duration, stdin io.Reader, env []string, name string, args ...string) (stdout, stderr []byte, err error) {
	return runCmd(h.describe(name, args), timeout, stdin, env,
		"ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// describe renders a command run in the namespace for messages.
func (h *Host) describe(name string, args []string) string {
	return fmt.Sprintf("netns %s: %s", h.Name, quoteCommand(name, args))
}

// runCommand runs a command in the root namespace; see runCmd.
func runCommand(timeout time.Duration, stdin io.Reader, env []string, name string, args ...string) (stdout, stderr []byte, err error) {
	return runCmd(quoteCommand(name, args), timeout, stdin, env, name, args...)
}

// runCmd runs a command with a timeout, in its own process group so that a
// timeout kills its children too, and returns its output. The error starts
// with desc, wraps the cause and quotes (the end of) stderr.
func runCmd(desc string, timeout time.Duration, stdin io.Reader, env []string, name string, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = commandEnv(env)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay // do not hang on pipes inherited by a daemon
	err = cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s: timed out after %v: %w (%w)", desc, timeout, ctx.Err(), err)
		} else {
			err = fmt.Errorf("%s: %w", desc, err)
		}
		if msg := bytes.TrimSpace(e.Bytes()); len(msg) > 0 {
			if len(msg) > maxErrStderr {
				msg = append([]byte("..."), msg[len(msg)-maxErrStderr:]...)
			}
			err = fmt.Errorf("%w; stderr:\n%s", err, msg)
		}
	}
	return o.Bytes(), e.Bytes(), err
}

// commandEnv returns the test's environment without proxy settings (which
// could send client traffic elsewhere), with the C locale for predictable
// messages, plus extra.
func commandEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToLower(k), "_proxy") || k == "LC_ALL" {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "LC_ALL=C"), extra...)
}

// quoteCommand renders a command line for messages, quoting arguments that
// need it.
func quoteCommand(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$;|&<>()*?[]{}`") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Start starts a long-running process inside the namespace and returns it.
// Its stdout and stderr go to a file in a test temp directory whose content
// is logged with t.Log if the test failed. In t.Cleanup the process and all
// its descendants are killed (children first, so each parent can reap them)
// and waited for; the harness owns Wait, so callers must not call it.
func (h *Host) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	return h.start(t, nil, name, args...).cmd
}

// StartEnv is Start with extra environment variables ("KEY=VALUE").
func (h *Host) StartEnv(t testing.TB, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	return h.start(t, env, name, args...).cmd
}

// proc is a process started with Start.
type proc struct {
	cmd    *exec.Cmd
	desc   string        // command line for messages
	output string        // file holding stdout and stderr
	done   chan struct{} // closed when Wait has returned
	err    error         // Wait's result, valid after done is closed
}

func (h *Host) start(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	// A file rather than a pipe: vsftpd's session processes inherit the
	// descriptors, and Wait would block on a pipe until the last one exits.
	out, err := os.CreateTemp(t.TempDir(), "output-*")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer out.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
	cmd.Env = commandEnv(env)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{
		cmd:    cmd,
		desc:   h.describe(name, args),
		output: out.Name(),
		done:   make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Start: %s: %v", p.desc, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("output of %s: %s", p.desc, p.readOutput())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readOutput returns what the process wrote so far.
func (p *proc) readOutput() string {
	b, err := os.ReadFile(p.output)
	switch {
	case err != nil:
		return fmt.Sprintf("(cannot read output: %v)", err)
	case len(b) == 0:
		return "(no output)"
	}
	return string(b)
}

// stop kills the process and its descendants and waits for it. It is safe to
// call more than once.
func (p *proc) stop() error {
	if !p.exited() {
		pid := p.cmd.Process.Pid
		killBottomUp(func() []int { return []int{pid} }, killTimeout)
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the rest of its process group
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("%s: still running %v after SIGKILL", p.desc, killTimeout)
	}
}

// teardown kills every process in the namespace and deletes it.
func (h *Host) teardown(t testing.TB) {
	h.mu.Lock()
	procs, deleted := h.procs, h.deleted
	h.mu.Unlock()
	for _, p := range procs {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
	}
	if deleted {
		return // `ip netns pids` needs the name; what ran in it was stopped above
	}
	// Stragglers: processes not started by Start (e.g. left over by a
	// timed-out Exec) or orphaned by it.
	left := killBottomUp(func() []int {
		pids, err := h.pids()
		if err != nil {
			t.Error(err)
		}
		return pids
	}, killTimeout)
	if len(left) > 0 {
		t.Errorf("teardown of %s: processes %v survive SIGKILL", h.Name, left)
	}
	if _, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "del", h.Name); err != nil {
		t.Errorf("teardown of %s: %v", h.Name, err)
	}
}

// pids lists the processes in the namespace.
func (h *Host) pids() ([]int, error) {
	out, _, err := runCommand(execTimeout, nil, nil, "ip", "netns", "pids", h.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("ip netns pids %s: unexpected %q", h.Name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// killBottomUp kills the processes that roots returns, and all their
// descendants, leaves first, until none is alive or timeout passes; it
// returns the survivors. Children die before their parents so that each
// parent reaps them: an orphan is reparented to PID 1, which on this
// project's VMs reaps it only much later, so `pgrep vsftpd` would keep
// showing zombies after the test.
func killBottomUp(roots func() []int, timeout time.Duration) (survivors []int) {
	deadline := time.Now().Add(timeout)
	for {
		table := readProcTable()
		alive := table.subtrees(roots())
		if len(alive) == 0 {
			return nil
		}
		victims := table.leaves(alive)
		if time.Now().After(deadline) {
			return alive
		}
		if len(victims) == 0 || time.Now().Add(timeout/2).After(deadline) {
			victims = alive // a cycle is impossible, but do not loop forever
		}
		for _, pid := range victims {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(pollInterval)
	}
}

// procTable maps live (non-zombie) processes to their parents.
type procTable map[int]int

// readProcTable reads the parent of every live process from /proc.
func readProcTable() procTable {
	table := procTable{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ..."; comm may contain spaces and ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			table[pid] = ppid
		}
	}
	return table
}

// subtrees returns the live processes among roots and all their live
// descendants.
func (pt procTable) subtrees(roots []int) []int {
	children := map[int][]int{}
	for pid, ppid := range pt {
		children[ppid] = append(children[ppid], pid)
	}
	seen := map[int]bool{}
	var out []int
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, alive := pt[pid]; !alive || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	sort.Ints(out)
	return out
}

// leaves returns the processes in set that have no live child.
func (pt procTable) leaves(set []int) []int {
	parent := map[int]bool{}
	for _, ppid := range pt {
		parent[ppid] = true
	}
	var out []int
	for _, pid := range set {
		if !parent[pid] {
			out = append(out, pid)
		}
	}
	return out
}

// FTPServer is a real vsftpd running in a namespace: anonymous, read-only,
// serving the files the test gave from Root on Port, over IPv4 and IPv6.
type FTPServer struct {
	Host *Host  // namespace vsftpd runs in
	Port int    // control port
	Root string // anonymous root directory

	config string // path of the configuration file, unique to this server
	proc   *proc
}

// StartVsftpd starts vsftpd in h, listening on port on all addresses of both
// families, serving files (slash-separated path relative to the root ->
// content) to anonymous users without a password. PASV, EPSV, PORT and EPRT are
// enabled; active-mode connections come from port 20. The root directory and
// the configuration live in a test temp directory. StartVsftpd returns when
// the port accepts connections and fails the test, with vsftpd's output, if
// it does not within 10 seconds. vsftpd is stopped in t.Cleanup.
func StartVsftpd(t testing.TB, h *Host, port int, files map[string][]byte) *FTPServer {
	t.Helper()
	return StartVsftpdWith(t, h, port, files)
}

// StartVsftpdWith is StartVsftpd with configuration lines ("key=value")
// that replace or add to the defaults: pasv_address, ssl_enable, ...
func StartVsftpdWith(t testing.TB, h *Host, port int, files map[string][]byte, options ...string) *FTPServer {
	t.Helper()
	requireTool(t, "vsftpd")
	if port <= 0 || port > math.MaxUint16 {
		t.Fatalf("StartVsftpd: bad port %d", port)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	empty := filepath.Join(dir, "empty")
	// vsftpd refuses an anonymous root the ftp user can write to, and its
	// secure_chroot_dir must exist; both are root-owned 0755 here.
	for _, d := range []string{root, empty} {
		mkdirPublic(t, d)
	}
	for name, content := range files {
		clean := path.Clean("/" + name)
		if clean == "/" || clean != "/"+name {
			t.Fatalf("StartVsftpd: file name %q: want a clean relative path", name)
		}
		file := root
		parts := strings.Split(clean[1:], "/")
		for _, dir := range parts[:len(parts)-1] {
			file = filepath.Join(file, dir)
			mkdirPublic(t, file)
		}
		writePublic(t, filepath.Join(file, parts[len(parts)-1]), content)
	}

	config := filepath.Join(dir, "vsftpd.conf")
	if err := os.WriteFile(config, []byte(vsftpdConfig(t, port, root, empty, options)), 0o600); err != nil {
		t.Fatalf("StartVsftpd: %v", err)
	}
	srv := &FTPServer{Host: h, Port: port, Root: root, config: config}
	srv.proc = h.start(t, nil, "vsftpd", config)

	deadline := time.Now().Add(readyTimeout)
	filter := fmt.Sprintf("sport = :%d", port)
	for {
		if srv.proc.exited() {
			t.Fatalf("StartVsftpd: vsftpd exited (%v); output:\n%s", srv.proc.err, srv.proc.readOutput())
		}
		out, _, err := h.run(execTimeout, nil, nil, "ss", "-Hltn", filter)
		if err != nil {
			t.Fatalf("StartVsftpd: %v", err)
		}
		if strings.TrimSpace(string(out)) != "" {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("StartVsftpd: nothing listens on port %d in %s after %v; vsftpd output:\n%s",
				port, h.Name, readyTimeout, srv.proc.readOutput())
		}
		time.Sleep(pollInterval)
	}
}

// vsftpdConfig renders the configuration. Options that matter beyond the
// obvious ones:
//   - isolate_network=NO: otherwise each session's unprivileged process lives
//     in a network namespace of its own (CLONE_NEWNET), where `ip netns pids`
//     cannot find it and each login costs a namespace creation;
//   - isolate=NO: no PID namespace per session either;
//   - short accept/connect timeouts: a blocked data connection ends the
//     session in 15 s instead of 60 s;
//   - ftp_username/nopriv_user: existing unprivileged users, checked here.
func vsftpdConfig(t testing.TB, port int, root, empty string, options []string) string {
	t.Helper()
	anonUser := existingUser(t, "ftp", "nobody")
	noprivUser := existingUser(t, "nobody", anonUser)
	lines := []string{
		"listen=NO",
		"listen_ipv6=YES", // one [::] socket serves IPv4 and IPv6
		"listen_port=" + strconv.Itoa(port),
		"background=NO",
		"anonymous_enable=YES",
		"no_anon_password=YES",
		"anon_root=" + root,
		"ftp_username=" + anonUser,
		"nopriv_user=" + noprivUser,
		"local_enable=NO",
		"write_enable=NO",
		"pasv_enable=YES",
		"port_enable=YES",
		"connect_from_port_20=YES",
		"seccomp_sandbox=NO",
		"isolate=NO",
		"isolate_network=NO",
		"secure_chroot_dir=" + empty,
		"xferlog_enable=NO",
		"syslog_enable=NO",
		"tcp_wrappers=NO",
		"ssl_enable=NO",
		"accept_timeout=15",
		"connect_timeout=15",
		"data_connection_timeout=60",
		"idle_session_timeout=60",
	}
	for _, o := range options {
		key, _, _ := strings.Cut(o, "=")
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, key+"=") })
		if i < 0 {
			lines = append(lines, o)
		} else {
			lines[i] = o
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// existingUser returns the first of names that exists as a user, or fails.
func existingUser(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if _, err := user.Lookup(n); err == nil {
			return n
		}
	}
	t.Fatalf("StartVsftpd: none of the users %q exists; vsftpd needs an unprivileged one", names)
	return ""
}

// mkdirPublic creates dir if needed and makes it root-owned mode 0755
// regardless of the umask.
func mkdirPublic(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("StartVsftpd: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("StartVsftpd: %v", err)
	}
}

// writePublic writes a world-readable file; vsftpd serves anonymous users
// only world-readable files (anon_world_readable_only).
func writePublic(t testing.TB, file string, content []byte) {
	t.Helper()
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatalf("StartVsftpd: %v", err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatalf("StartVsftpd: %v", err)
	}
}

// Mode is an FTP data-connection mode, named by the command that sets it up.
type Mode string

// The four data-connection modes. PASV and EPSV are passive (the client
// connects to the server), PORT and EPRT active (the server connects to the
// client). EPSV and EPRT (RFC 2428) also work over IPv6; PASV and PORT carry
// IPv4 addresses only.
const (
	PASV Mode = "PASV"
	EPSV Mode = "EPSV"
	PORT Mode = "PORT"
	EPRT Mode = "EPRT"
)

// Modes lists all four data-connection modes.
var Modes = []Mode{PASV, EPSV, PORT, EPRT}

// URL returns ftp://addr:port/path, with an IPv6 address in brackets. A path
// that does not start with "/" gets one; a path ending in "/" names a
// directory to list.
func URL(addr netip.Addr, port int, path string) string {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := url.URL{
		Scheme: "ftp",
		Host:   netip.AddrPortFrom(addr, uint16(port)).String(),
		Path:   path,
	}
	return u.String()
}

// Curl fetches url with curl inside the client namespace, forcing mode, and
// returns the body (a listing if the path ends in "/"). The whole transfer
// may take timeout (--max-time) and connecting 3 seconds (--connect-timeout),
// so blocked connections fail fast. On failure it returns what arrived and an
// error, never failing the test itself.
//
// Curl falls back silently (to PASV when EPSV fails, to PORT when EPRT fails)
// and forces EPSV and EPRT over IPv6, so Curl reads curl's protocol trace and
// returns an error wrapping ErrWrongMode unless exactly the requested command
// was used. For PASV it also disables curl's default (since 7.74.0)
// --ftp-skip-pasv-ip, so the address in the 227 reply is honoured as by
// classic clients: a NAT that fails to rewrite it is noticed.
func Curl(t testing.TB, client *Host, mode Mode, url string, timeout time.Duration) ([]byte, error) {
	t.Helper()
	requireTool(t, "curl")
	args := []string{
		"-q", // ignore ~/.curlrc; must come first
		"--silent", "--show-error", "--verbose",
		"--connect-timeout", strconv.Itoa(connectLimit),
		"--max-time", seconds(timeout),
	}
	switch mode {
	case PASV:
		args = append(args, "--ftp-pasv", "--disable-epsv", "--no-ftp-skip-pasv-ip")
	case EPSV:
		args = append(args, "--ftp-pasv")
	case PORT:
		args = append(args, "--ftp-port", "-", "--disable-eprt")
	case EPRT:
		args = append(args, "--ftp-port", "-")
	default:
		return nil, fmt.Errorf("Curl: unknown mode %q", mode)
	}
	args = append(args, url)
	body, trace, err := client.run(timeout+clientGrace, nil, nil, "curl", args...)
	return body, checkMode("curl", mode, dataCommands(trace, "> "), err)
}

// Lftp runs lftp inside the client namespace to list url (path ending in "/",
// `cls -1 --basename`) or print the file (`cat`), and returns the output. lftp
// is set up to fail within about timeout: net:timeout half of it (lftp
// tries twice even with net:max-retries 1), no switching between passive and active mode after a
// failure (ftp:auto-passive-mode), and the PASV reply's address used as given
// (ftp:fix-pasv-address off). PASV and EPSV use passive mode (EPSV through
// ftp:prefer-epsv), PORT and EPRT active mode. lftp has no setting to choose
// between PORT and EPRT, nor PASV over IPv6: it uses EPRT and EPSV exactly
// when the control connection is IPv6. As in Curl, the protocol trace is
// checked and an error wrapping ErrWrongMode comes back if another command
// was used. Errors are returned, never fatal.
func Lftp(t testing.TB, client *Host, mode Mode, url string, timeout time.Duration) ([]byte, error) {
	t.Helper()
	requireTool(t, "lftp")
	site, target, err := splitFTPURL(url)
	if err != nil {
		return nil, fmt.Errorf("Lftp: %w", err)
	}
	var modeSettings string
	switch mode {
	case PASV:
		modeSettings = "set ftp:passive-mode on; set ftp:prefer-epsv no"
	case EPSV:
		modeSettings = "set ftp:passive-mode on; set ftp:prefer-epsv yes"
	case PORT, EPRT:
		modeSettings = "set ftp:passive-mode off"
	default:
		return nil, fmt.Errorf("Lftp: unknown mode %q", mode)
	}
	action := "cat " + lftpQuote(target)
	if strings.HasSuffix(target, "/") {
		action = "cls -1 --basename " + lftpQuote(target)
	}
	// Even with net:max-retries 1, lftp reconnects once after a timeout
	// before it gives up, so each of the two tries gets half the time.
	netTimeout := strconv.Itoa(int(math.Ceil(max(timeout.Seconds()/2, 1))))
	script := strings.Join([]string{
		"set cmd:fail-exit yes",
		"set ftp:ssl-allow no",
		"set ftp:auto-passive-mode no",
		"set ftp:fix-pasv-address no",
		"set ftp:ignore-pasv-address no",
		"set net:timeout " + netTimeout,
		"set net:max-retries 1",
		"set net:persist-retries 0",
		"set net:reconnect-interval-base 1",
		"set net:reconnect-interval-max 1",
		modeSettings,
		"open " + lftpQuote(site),
		action,
	}, "; ")
	// lftp keeps history and state under $HOME (or $LFTP_HOME); give it a
	// private one.
	home := t.TempDir()
	env := []string{"HOME=" + home, "LFTP_HOME=" + home}
	out, trace, err := client.run(timeout+clientGrace, nil, env, "lftp", "--norc", "-d", "-c", script)
	return out, checkMode("lftp", mode, dataCommands(trace, "---> "), err)
}

// splitFTPURL splits an ftp:// URL into the site ("ftp://host:port") and the
// decoded path ("/" if empty).
func splitFTPURL(raw string) (site, target string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "ftp" || u.Host == "" {
		return "", "", fmt.Errorf("URL %q: want ftp://host[:port]/path", raw)
	}
	target = u.Path
	if target == "" {
		target = "/"
	}
	return "ftp://" + u.Host, target, nil
}

// lftpQuote quotes s as one word of lftp's command language.
func lftpQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// seconds renders d for curl's --max-time, which takes decimal seconds.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// dataCommands returns the data-connection commands (PASV, EPSV, PORT, EPRT)
// in a client's protocol trace, in order. sent is the prefix the client puts
// before each line it sent.
func dataCommands(trace []byte, sent string) []Mode {
	var cmds []Mode
	for _, line := range strings.Split(string(trace), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), sent)
		if !ok {
			continue
		}
		verb, _, _ := strings.Cut(rest, " ")
		switch m := Mode(strings.ToUpper(verb)); m {
		case PASV, EPSV, PORT, EPRT:
			cmds = append(cmds, m)
		}
	}
	return cmds
}

// checkMode combines a client's result runErr with whether it used only the
// requested mode. A client that failed before sending any data-connection
// command (say, the control connection was refused) reports runErr alone.
func checkMode(client string, want Mode, sent []Mode, runErr error) error {
	var modeErr error
	for _, m := range sent {
		if m != want {
			modeErr = fmt.Errorf("%s: requested %s, sent %v: %w", client, want, sent, ErrWrongMode)
			break
		}
	}
	if len(sent) == 0 && runErr == nil {
		modeErr = fmt.Errorf("%s: requested %s, sent no data-connection command: %w", client, want, ErrWrongMode)
	}
	return errors.Join(modeErr, runErr)
}

// Do runs f on a thread inside h's namespace, so that the sockets f creates
// (listeners, connections) belong to h; they stay there when f returns. A
// process that f starts (exec.Cmd.Start) is born inside h, with no wrapper.
// The thread leaves the namespace afterwards; if it cannot, it stays locked
// and ends with its goroutine, so no other code runs in the wrong
// namespace.
func (h *Host) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(h.Path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("leave namespace %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
