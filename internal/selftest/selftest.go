package selftest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/nft"
)

// Addresses of the two peers: documentation prefixes, only ever used inside
// the throwaway namespaces.
var (
	serverV4 = netip.MustParsePrefix("192.0.2.1/24")
	clientV4 = netip.MustParsePrefix("192.0.2.2/24")
	serverV6 = netip.MustParsePrefix("2001:db8:f7::1/64")
	clientV6 = netip.MustParsePrefix("2001:db8:f7::2/64")
)

const (
	ftpPort      = 21
	payloadSize  = 1 << 20
	okTimeout    = 20 * time.Second
	blockTimeout = 3 * time.Second
	eventWait    = 2 * time.Second
)

// ErrFailed reports that a step of the self-test was not observed.
var ErrFailed = errors.New("selftest failed")

// Run performs the self-test, writing each step to w as it happens. It
// returns nil only if every step was observed, an error wrapping ErrFailed if
// a step was not, or another error if the test could not be set up.
func Run(ctx context.Context, w io.Writer) error {
	r := &run{w: w}
	capa, err := helper.Probe("/")
	if err != nil {
		return err
	}
	if !capa.Available {
		return fmt.Errorf("kernel has no FTP conntrack helper (nf_conntrack_ftp): %w", errors.ErrUnsupported)
	}
	r.printf("kernel: ftp conntrack helper available (nf_conntrack_ftp ports=%s loose=%t)\n", capa.Ports, capa.Loose)

	srv, err := startPeer(ctx, "server")
	if err != nil {
		return err
	}
	defer srv.stop()
	cli, err := startPeer(ctx, "client")
	if err != nil {
		return err
	}
	defer cli.stop()
	if err := link(srv, cli); err != nil {
		return fmt.Errorf("set up veth between the namespaces: %w", err)
	}
	r.ok("namespaces: server (%s) and client (%s) joined by veth; %s, %s <-> %s, %s",
		srv.nsPath, cli.nsPath, serverV4.Addr(), serverV6.Addr(), clientV4.Addr(), clientV6.Addr())

	if rep, err := srv.do(request{Op: "serve", Port: ftpPort, Size: payloadSize}); err != nil || !rep.OK {
		if err == nil {
			err = errors.New(rep.Error)
		}
		return fmt.Errorf("start the built-in FTP server: %w", err)
	}
	r.ok("built-in FTP server listening on port %d, serving /payload.bin (%d bytes)", ftpPort, payloadSize)

	rs, err := nft.Build(nft.DefaultConfig())
	if err != nil {
		return err
	}
	if _, err := nft.Apply(ctx, rs, nft.WithNetNS(srv.nsPath)); err != nil {
		return err
	}
	r.ok("ftpnft ruleset installed in the server namespace (table inet %s, policy drop)", rs.Table)

	events, stopWatch, err := watch(ctx, srv.nsPath)
	if err != nil {
		return err
	}
	defer stopWatch()

	want := digest(payload(payloadSize))
	for _, s := range []struct {
		name string
		addr netip.Addr
		mode string
	}{
		{"passive IPv4", serverV4.Addr(), "PASV"},
		{"active IPv4", serverV4.Addr(), "PORT"},
		{"passive IPv6", serverV6.Addr(), "EPSV"},
		{"active IPv6", serverV6.Addr(), "EPRT"},
	} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.printf("%s (%s):\n", s.name, s.mode)
		r.session(srv, cli, rs, events, s.addr, s.mode, want)
	}

	// Negative control: the same policy without the helper.
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.printf("negative control (the same policy without the helper):\n")
	if _, err := nft.Apply(ctx, rs.WithoutHelper(), nft.WithNetNS(srv.nsPath)); err != nil {
		return err
	}
	drain(events)
	rep, err := cli.do(request{Op: "fetch", Addr: serverV4.Addr().String(), Port: ftpPort, Mode: "PASV", Path: "/payload.bin", Timeout: blockTimeout})
	switch {
	case err != nil:
		return err
	case rep.OK:
		r.fail("passive data connection was admitted without the helper")
	default:
		r.ok("passive data connection blocked (%s)", rep.Error)
	}
	if evs := collect(events, eventWait/2); len(evs) > 0 {
		r.fail("expectations appeared without the helper: %v", evs)
	} else {
		r.ok("no expectation created")
	}

	if r.failed > 0 {
		r.printf("selftest FAILED: %d of %d steps not observed\n", r.failed, r.failed+r.passed)
		return fmt.Errorf("%d of %d steps: %w", r.failed, r.failed+r.passed, ErrFailed)
	}
	r.printf("selftest passed: %d steps observed; namespaces removed\n", r.passed)
	return nil
}

// run prints steps and counts them.
type run struct {
	w              io.Writer
	passed, failed int
}

func (r *run) printf(format string, a ...any) { fmt.Fprintf(r.w, format, a...) }
func (r *run) ok(format string, a ...any) {
	r.passed++
	fmt.Fprintf(r.w, "  [ok]   "+format+"\n", a...)
}
func (r *run) fail(format string, a ...any) {
	r.failed++
	fmt.Fprintf(r.w, "  [FAIL] "+format+"\n", a...)
}

// session runs one FTP transfer and checks each step.
func (r *run) session(srv, cli *peer, rs *nft.Ruleset, events <-chan conntrack.Event, addr netip.Addr, mode, want string) {
	before, err := assignCount(rs, srv.nsPath)
	if err != nil {
		r.fail("read counters: %v", err)
		return
	}
	drain(events)
	rep, err := cli.do(request{Op: "fetch", Addr: addr.String(), Port: ftpPort, Mode: mode, Path: "/payload.bin", Timeout: okTimeout})
	if err != nil {
		r.fail("client: %v", err)
		return
	}
	after, err := assignCount(rs, srv.nsPath)
	switch {
	case err != nil:
		r.fail("read counters: %v", err)
	case after > before:
		r.ok("helper assigned to the control connection %s -> %s (rule counter %d -> %d)",
			rep.Control, net.JoinHostPort(addr.String(), strconv.Itoa(ftpPort)), before, after)
	default:
		r.fail("helper not assigned to the control connection (rule counter stayed %d)", before)
	}
	var expectation, related *conntrack.Event
	for _, e := range collectUntil(events, eventWait, func(e conntrack.Event) bool { return e.Type == conntrack.EventRelated }) {
		switch {
		case e.Type == conntrack.EventNew && expectation == nil:
			expectation = &e
		case e.Type == conntrack.EventRelated && related == nil:
			related = &e
		}
	}
	if expectation != nil {
		x := expectation.Expectation
		r.ok("expectation created: %s for control %s, timeout %ds", x.Expected, x.Master, x.Timeout)
	} else {
		r.fail("no expectation created")
	}
	if related != nil {
		r.ok("data connection admitted as RELATED: %s", related.Related.Flow)
	} else {
		r.fail("no data connection admitted as RELATED")
	}
	switch {
	case !rep.OK:
		r.fail("transfer failed: %s", rep.Error)
	case rep.SHA256 != want:
		r.fail("transfer: %d bytes, sha256 %s, want %s", rep.Bytes, rep.SHA256, want)
	default:
		r.ok("transfer: %d bytes, sha256 matches", rep.Bytes)
	}
}

// assignCount is the packet counter of the helper assignment rule.
func assignCount(rs *nft.Ruleset, nsPath string) (uint64, error) {
	st, err := nft.ReadStatus(context.Background(), rs, nft.WithNetNS(nsPath))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range st.Counters {
		if c.Chain == "prerouting" {
			n += c.Packets
		}
	}
	return n, nil
}

// watch streams the server namespace's conntrack events into a channel.
func watch(ctx context.Context, nsPath string) (<-chan conntrack.Event, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	events := make(chan conntrack.Event, 256)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- conntrack.Watch(ctx, func(e conntrack.Event) {
			select {
			case events <- e:
			default: // the self-test reads promptly; never block the watch
			}
		}, conntrack.WithNetNS(nsPath), conntrack.WithReady(func() { close(ready) }))
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("watch conntrack: %w", err)
	}
	return events, func() { cancel(); <-done }, nil
}

func drain(events <-chan conntrack.Event) {
	for {
		select {
		case <-events:
		default:
			return
		}
	}
}

// collect gathers events for d.
func collect(events <-chan conntrack.Event, d time.Duration) []conntrack.Event {
	return collectUntil(events, d, func(conntrack.Event) bool { return false })
}

// collectUntil gathers events until one satisfies last (it is included) or
// d passes.
func collectUntil(events <-chan conntrack.Event, d time.Duration, last func(conntrack.Event) bool) []conntrack.Event {
	var evs []conntrack.Event
	timeout := time.After(d)
	for {
		select {
		case e := <-events:
			evs = append(evs, e)
			if last(e) {
				return evs
			}
		case <-timeout:
			return evs
		}
	}
}

// peer is this binary re-executed as a selftest peer in a new network
// namespace.
type peer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	nsPath string
	mu     sync.Mutex
}

func startPeer(ctx context.Context, role string) (*peer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, PeerCommand, role)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s peer in a new network namespace: %w", role, err)
	}
	p := &peer{cmd: cmd, in: in, out: bufio.NewScanner(out), nsPath: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	p.out.Buffer(nil, 1<<20)
	return p, nil
}

// do sends one request and waits for the reply.
func (p *peer) do(req request) (reply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return reply{}, err
	}
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return reply{}, fmt.Errorf("peer: %w", err)
	}
	if !p.out.Scan() {
		return reply{}, fmt.Errorf("peer ended: %v", p.out.Err())
	}
	var rep reply
	err = json.Unmarshal(p.out.Bytes(), &rep)
	return rep, err
}

// stop ends the peer; its namespace goes with it.
func (p *peer) stop() {
	p.in.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// link joins the two peers' namespaces with a veth pair and addresses.
func link(srv, cli *peer) error {
	srvNS, err := netns.GetFromPath(srv.nsPath)
	if err != nil {
		return err
	}
	defer srvNS.Close()
	cliNS, err := netns.GetFromPath(cli.nsPath)
	if err != nil {
		return err
	}
	defer cliNS.Close()
	hs, err := netlink.NewHandleAt(srvNS)
	if err != nil {
		return err
	}
	defer hs.Close()
	hc, err := netlink.NewHandleAt(cliNS)
	if err != nil {
		return err
	}
	defer hc.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ftpnft0"}, PeerName: "ftpnft1", PeerNamespace: netlink.NsFd(cliNS)}
	if err := hs.LinkAdd(veth); err != nil {
		return err
	}
	for _, side := range []struct {
		h     *netlink.Handle
		name  string
		addrs []netip.Prefix
	}{
		{hs, "ftpnft0", []netip.Prefix{serverV4, serverV6}},
		{hc, "ftpnft1", []netip.Prefix{clientV4, clientV6}},
	} {
		lo, err := side.h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := side.h.LinkSetUp(lo); err != nil {
			return err
		}
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		for _, p := range side.addrs {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := side.h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %s: %w", p, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}
