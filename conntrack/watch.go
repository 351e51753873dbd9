package conntrack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ftpnft/ftpnft/internal/nlio"
	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ErrNetNSGone reports that the watched network namespace's path was
// removed (ip netns del) or now names another namespace.
var ErrNetNSGone = errors.New("network namespace was deleted")

// Option configures List and Watch.
type Option func(*options)

type options struct {
	netnsPath  string
	netnsSet   bool // WithNetNS was given, even with ""
	netnsFd    int
	helper     string
	readBuffer int
	nsPoll     time.Duration
	ready      func()
}

// WithReady calls ready once Watch is subscribed and has listed the live
// expectations: every event from then on will be reported.
func WithReady(ready func()) Option { return func(o *options) { o.ready = ready } }

// WithNetNS works in the network namespace at path, such as
// /var/run/netns/NAME or /proc/PID/ns/net. An empty path is an error, never
// the caller's own namespace; so is a path that is not a network namespace.
func WithNetNS(path string) Option {
	return func(o *options) { o.netnsPath, o.netnsSet = path, true }
}

// WithNetNSFd works in the network namespace of an open file descriptor,
// which the caller keeps open and owns.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netnsFd = fd } }

// WithHelper keeps only expectations (and related connections) of the named
// kernel helper; "" keeps all. The default is "ftp".
func WithHelper(name string) Option { return func(o *options) { o.helper = name } }

// WithReadBuffer sets the receive buffer of the watch socket in bytes
// (default [DefaultReadBuffer]). A larger buffer loses fewer events under
// bursts; tests use a tiny one to provoke losses.
func WithReadBuffer(bytes int) Option { return func(o *options) { o.readBuffer = bytes } }

// DefaultReadBuffer is the watch socket's receive buffer, so that bursts of
// thousands of events per second are not lost while the reader catches up:
// with the kernel's default (about 200 KiB) a watch lost about half of
// 10,000 expectations created in bursts of 500, with this one none (see
// BenchmarkWatch). With privileges it may exceed net.core.rmem_max; the
// kernel charges only what is queued.
const DefaultReadBuffer = 8 << 20

func collect(opts []Option) options {
	o := options{netnsFd: -1, helper: "ftp", nsPoll: 500 * time.Millisecond, readBuffer: DefaultReadBuffer}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// namespace opens the namespace the options name; close releases it.
type namespace struct {
	file *os.File
	fd   int // -1: the caller's namespace
	ino  uint64
	path string
}

func openNamespace(o options) (*namespace, error) {
	switch {
	case o.netnsSet:
		f, err := nlio.OpenNetNS(o.netnsPath)
		if err != nil {
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("stat network namespace %s: %w", o.netnsPath, err)
		}
		return &namespace{file: f, fd: int(f.Fd()), ino: st.Ino, path: o.netnsPath}, nil
	case o.netnsFd >= 0:
		return &namespace{fd: o.netnsFd}, nil
	}
	return &namespace{fd: -1}, nil
}

func (n *namespace) close() {
	if n.file != nil {
		n.file.Close()
	}
}

// goneErr returns an error wrapping ErrNetNSGone when the namespace's path
// no longer names it, and nil otherwise.
func (n *namespace) goneErr() error {
	if n.path == "" {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(n.path, &st); err == nil && st.Ino == n.ino {
		return nil
	}
	return fmt.Errorf("watch %s: %w", n.path, ErrNetNSGone)
}

// dial connects to conntrack in the namespace through
// github.com/ti-mo/conntrack, for what it decodes: connections.
func (n *namespace) dial() (*ct.Conn, error) {
	c, err := ct.Dial(n.config())
	if err != nil {
		return nil, fmt.Errorf("connect to conntrack: %w", unsupported(err))
	}
	return c, nil
}

// socket opens a netlink socket to nfnetlink in the namespace, for dumps and
// events that this package reads itself.
func (n *namespace) socket() (*netlink.Conn, error) {
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, n.config())
	if err != nil {
		return nil, fmt.Errorf("connect to conntrack: %w", unsupported(err))
	}
	return nc, nil
}

func (n *namespace) config() *netlink.Config {
	cfg := &netlink.Config{}
	if n.fd >= 0 {
		cfg.NetNS = n.fd
	}
	return cfg
}

// unsupported marks the errors of a kernel without conntrack's netlink
// interface as errors.ErrUnsupported too, as the nft package does: no
// nfnetlink at all fails the socket with EPROTONOSUPPORT, and nfnetlink
// without ctnetlink answers a well-formed dump with EINVAL.
func unsupported(err error) error {
	if errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%w (%w: the kernel lacks conntrack's netlink interface, CONFIG_NF_CT_NETLINK)", err, errors.ErrUnsupported)
	}
	return err
}

// List returns the live expectations of the namespace, of helper "ftp"
// unless [WithHelper] says otherwise, IPv4 and IPv6, ordered by master and
// expected tuple.
func List(opts ...Option) ([]Expectation, error) {
	o := collect(opts)
	ns, err := openNamespace(o)
	if err != nil {
		return nil, err
	}
	defer ns.close()
	return ns.list(o.helper)
}

// list returns the namespace's expectations of helper ("" keeps all),
// sorted.
func (n *namespace) list(helper string) ([]Expectation, error) {
	out := []Expectation{}
	if err := n.each(helper, func(x Expectation) { out = append(out, x) }); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Expectation) int {
		if c := strings.Compare(a.Helper, b.Helper); c != 0 {
			return c
		}
		if c := a.Master.compare(b.Master); c != 0 {
			return c
		}
		return a.Expected.compare(b.Expected)
	})
	return out, nil
}

// each dumps the namespace's expectations and hands those of helper (""
// keeps all) to fn one at a time, in the kernel's order, as their messages
// arrive.
func (n *namespace) each(helper string, fn func(Expectation)) error {
	nc, err := n.socket()
	if err != nil {
		return err
	}
	defer nc.Close()
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK_EXP<<8 | ipctnlMsgExpGet),
			Flags: netlink.Request | netlink.Dump,
		},
		// nfgenmsg: AF_UNSPEC dumps IPv4 and IPv6.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	if _, err := nc.Send(req); err != nil {
		return fmt.Errorf("list expectations: %w", unsupported(err))
	}
	var derr error
	err = nlio.Receive(nc, true, func(m netlink.Message) bool {
		switch m.Header.Type {
		case netlink.Done, netlink.Error:
			// Both carry an error code: the request's, or that of a dump
			// that failed part way.
			if code, ok := nlio.Errno(m); code != 0 {
				derr = code
			} else if !ok && m.Header.Type == netlink.Error {
				derr = errMalformed
			}
			return true
		}
		x, err := decodeExpectation(m.Data)
		if err != nil {
			derr = err
			return true
		}
		if keeps(helper, x.Helper) {
			fn(x)
		}
		return false
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("list expectations: %w", unsupported(err))
	}
	return nil
}

// key identifies an expectation across events and dumps.
func key(e Expectation) expKey {
	return expKey{e.Helper, e.Master, e.Expected}
}

// expKey identifies an expectation: its helper, master and expected tuple.
type expKey struct {
	helper           string
	master, expected Tuple
}

// listener is one subscription to conntrack events: a goroutine reads the
// socket and hands over messages, or the error that ended it.
type listener struct {
	conn    *netlink.Conn
	msgs    chan netlink.Message
	errs    chan error
	done    chan struct{} // closed to stop the goroutine
	stopped chan struct{} // closed when it has stopped
}

// watchGroups are the multicast groups a watch joins: new connections (for
// related data connections), new and destroyed expectations.
var watchGroups = []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTExpNew, netfilter.GroupCTExpDestroy}

func listen(ns *namespace, readBuffer int) (*listener, error) {
	nc, err := ns.socket()
	if err != nil {
		return nil, err
	}
	if readBuffer > 0 {
		if err := nc.SetReadBuffer(readBuffer); err != nil {
			nc.Close()
			return nil, fmt.Errorf("set read buffer: %w", err)
		}
	}
	for _, g := range watchGroups {
		if err := nc.JoinGroup(uint32(g)); err != nil {
			nc.Close()
			return nil, fmt.Errorf("listen for conntrack events: %w", err)
		}
	}
	l := &listener{conn: nc, msgs: make(chan netlink.Message, 64), errs: make(chan error, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go l.read()
	return l, nil
}

// read receives until the socket fails or is closed.
func (l *listener) read() {
	defer close(l.stopped)
	for {
		ms, err := l.conn.Receive()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
			}
			return
		}
		for _, m := range ms {
			select {
			case l.msgs <- m:
			case <-l.done:
				return
			}
		}
	}
}

// close closes the socket and waits for the goroutine to stop.
func (l *listener) close() {
	close(l.done)
	l.conn.Close()
	<-l.stopped
}

// Watch reports events to handle until ctx ends (then it returns nil) or the
// watch cannot go on (the namespace was deleted: an error wrapping
// [ErrNetNSGone]; or netlink failed). handle runs on Watch's goroutine; while
// it runs, events queue in the kernel, so it should be quick. Watch leaves no
// goroutine behind when it returns.
func Watch(ctx context.Context, handle func(Event), opts ...Option) error {
	o := collect(opts)
	ns, err := openNamespace(o)
	if err != nil {
		return err
	}
	defer ns.close()

	query, err := ns.dial()
	if err != nil {
		return err
	}
	defer query.Close()

	w := &watcher{o: o, ns: ns, query: query, handle: handle, known: map[expKey]Expectation{}, masters: map[Tuple]master{}}
	l, err := listen(ns, o.readBuffer)
	if err != nil {
		return err
	}
	defer func() {
		if l != nil {
			l.close()
		}
	}()
	// Listen first, then list, so that nothing falls between the two.
	if err := w.resync(false); err != nil {
		return err
	}
	if o.ready != nil {
		o.ready()
	}

	tick := time.NewTicker(o.nsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-l.msgs:
			w.message(m)
		case err := <-l.errs:
			if !errors.Is(err, syscall.ENOBUFS) {
				if gone := ns.goneErr(); gone != nil {
					return gone
				}
				return fmt.Errorf("watch conntrack events: %w", err)
			}
			// The kernel dropped events; start afresh and resynchronise.
			l.close()
			next, err := listen(ns, o.readBuffer)
			if err != nil {
				l = nil
				return err
			}
			l = next
			if err := w.resync(true); err != nil {
				return err
			}
		case now := <-tick.C:
			w.forget(now.Add(-masterMemory))
			if gone := ns.goneErr(); gone != nil {
				return gone
			}
		}
	}
}

// watcher holds what a watch knows.
type watcher struct {
	o      options
	ns     *namespace
	query  *ct.Conn // asks for a master connection's helper
	handle func(Event)
	// known are the live expectations by key.
	known map[expKey]Expectation
	// masters maps a control connection to its helper, learned from
	// expectations, control connections' NEW events and kernel lookups, to
	// name the helper of related connections.
	masters map[Tuple]master
}

// remember notes that control connection t has helper.
func (w *watcher) remember(t Tuple, helper string) {
	w.masters[t] = master{helper, time.Now()}
}

// master is what a watch remembers of a control connection.
type master struct {
	helper string
	seen   time.Time
}

// masterMemory is how long a control connection's helper is remembered after
// its last expectation: long enough for the data connection to arrive.
const masterMemory = 2 * time.Minute

// forget drops control connections that have no live expectation and were
// last seen before cutoff, so a long watch does not grow.
func (w *watcher) forget(cutoff time.Time) {
	live := map[Tuple]bool{}
	for _, x := range w.known {
		live[x.Master] = true
	}
	for t, m := range w.masters {
		if !live[t] && m.seen.Before(cutoff) {
			delete(w.masters, t)
		}
	}
}

// keeps reports whether the helper filter ("" for all) admits helper name.
func keeps(filter, name string) bool { return filter == "" || name == filter }

func (w *watcher) wanted(helper string) bool { return keeps(w.o.helper, helper) }

// message handles one event message from the kernel.
func (w *watcher) message(m netlink.Message) {
	sub, typ := m.Header.Type>>8, m.Header.Type&0xff
	if sub == unix.NFNL_SUBSYS_CTNETLINK_EXP && (typ == ipctnlMsgExpNew || typ == ipctnlMsgExpDelete) {
		x, err := decodeExpectation(m.Data)
		if err != nil {
			return
		}
		if typ == ipctnlMsgExpNew {
			w.known[key(x)] = x
			w.remember(x.Master, x.Helper)
			if w.wanted(x.Helper) {
				w.handle(Event{Type: EventNew, Expectation: &x})
			}
			return
		}
		delete(w.known, key(x))
		if w.wanted(x.Helper) {
			w.handle(Event{Type: EventDestroy, Expectation: &x})
		}
		return
	}
	if sub != unix.NFNL_SUBSYS_CTNETLINK || !mayRelate(m.Data) {
		return
	}
	var ev ct.Event
	if err := ev.Unmarshal(m); err != nil || ev.Type != ct.EventNew || ev.Flow == nil {
		return
	}
	if ev.Flow.Helper.Name != "" {
		// A control connection that got a helper.
		w.remember(tupleOf(ev.Flow.TupleOrig), ev.Flow.Helper.Name)
	}
	r, ok := relatedOf(*ev.Flow)
	if !ok {
		return
	}
	r.Helper = w.helperOf(r.Master)
	if w.wanted(r.Helper) {
		w.handle(Event{Type: EventRelated, Related: &r})
	}
}

// helperOf names the helper of a control connection: from the expectations
// seen, or else by asking the kernel for the master connection.
func (w *watcher) helperOf(t Tuple) string {
	if m, ok := w.masters[t]; ok {
		return m.helper
	}
	if w.query == nil {
		return ""
	}
	f := ct.Flow{TupleOrig: ct.Tuple{
		IP:    ct.IPTuple{SourceAddress: t.Src, DestinationAddress: t.Dst},
		Proto: ct.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: t.SPort, DestinationPort: t.DPort},
	}}
	got, err := w.query.Get(f)
	if err != nil {
		return ""
	}
	w.remember(t, got.Helper.Name)
	return got.Helper.Name
}

// resync lists the expectations and, when lost is true, reports a lost event
// and the differences from what the watch knew. (Unsorted: reconcile keys
// them by master and expected tuple.)
func (w *watcher) resync(lost bool) error {
	var xs []Expectation
	if err := w.ns.each("", func(x Expectation) { xs = append(xs, x) }); err != nil {
		return err
	}
	w.reconcile(xs, lost)
	return nil
}

// reconcile replaces what the watch knows with the listed expectations xs
// and, when events were lost, reports the loss and the differences.
func (w *watcher) reconcile(xs []Expectation, lost bool) {
	now := map[expKey]Expectation{}
	for _, x := range xs {
		now[key(x)] = x
		w.remember(x.Master, x.Helper)
	}
	if !lost {
		w.known = now
		return
	}
	var diffs []Event
	for k, x := range now {
		if _, ok := w.known[k]; !ok && w.wanted(x.Helper) {
			diffs = append(diffs, Event{Type: EventNew, Expectation: &x})
		}
	}
	for k, x := range w.known {
		if _, ok := now[k]; !ok && w.wanted(x.Helper) {
			diffs = append(diffs, Event{Type: EventDestroy, Expectation: &x})
		}
	}
	w.known = now
	w.handle(Event{Type: EventLost, Resynced: len(diffs)})
	for _, d := range diffs {
		w.handle(d)
	}
}
