package conntrack

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// replay is ctnetlink played back from messages captured from the kernel
// (testdata/ftp-events.hex): the test seam behind List, WriteJSON and Watch.
type replay struct {
	mu sync.Mutex
	// dumps are the expectation messages each dump answers with, in
	// turn (the last one again when they run out); dumpErr ends a dump
	// with that error code instead of success.
	dumps   [][]netlink.Message
	dumpErr syscall.Errno
	ndumps  int
	// subscriptions deliver these message batches, in turn; a batch that
	// is nil fails the subscription with ENOBUFS, as the kernel does when
	// it dropped events.
	subscriptions [][][]netlink.Message
	nsubs         int
	helpers       map[Tuple]string
	allFlows      []flow
	deleted       []Tuple // the original tuples of the flows deleted
	isGone        bool
	closed        bool
}

func (r *replay) dump(ctx context.Context, req netlink.Message, each func(netlink.Message) bool) error {
	r.mu.Lock()
	ms := r.dumps[min(r.ndumps, len(r.dumps)-1)]
	r.ndumps++
	r.mu.Unlock()
	for _, m := range ms {
		m.Header.Flags |= netlink.Multi
		if each(m) {
			return nil
		}
	}
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}, Data: binary.NativeEndian.AppendUint32(nil, uint32(-int32(r.dumpErr)))}
	each(done)
	return ctx.Err()
}

func (r *replay) subscribe(groups []netfilter.NetlinkGroup, readBuffer int) (events, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var batches [][]netlink.Message
	if r.nsubs < len(r.subscriptions) {
		batches = r.subscriptions[r.nsubs]
	}
	r.nsubs++
	return &replayEvents{batches: batches, closed: make(chan struct{})}, nil
}

func (r *replay) helperOf(t Tuple) (string, error) {
	if h, ok := r.helpers[t]; ok {
		return h, nil
	}
	return "", syscall.ENOENT
}

func (r *replay) stats() (uint32, uint32, error) { return uint32(len(r.allFlows)), 65536, nil }

func (r *replay) flows() ([]flow, error) { return slices.Clone(r.allFlows), nil }

func (r *replay) deleteFlow(f flow) error {
	i := slices.IndexFunc(r.allFlows, func(x flow) bool { return x.orig == f.orig && x.proto == f.proto })
	if i < 0 {
		return syscall.ENOENT
	}
	r.allFlows = slices.Delete(r.allFlows, i, i+1)
	r.deleted = append(r.deleted, f.orig)
	return nil
}

func (r *replay) gone() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isGone {
		return &Error{Op: "watch", Err: ErrNetNSGone}
	}
	return nil
}

func (r *replay) close() { r.closed = true }

// replayEvents delivers its batches, then blocks until closed.
type replayEvents struct {
	batches [][]netlink.Message
	closed  chan struct{}
	once    sync.Once
}

func (e *replayEvents) Receive() ([]netlink.Message, error) {
	if len(e.batches) > 0 {
		b := e.batches[0]
		e.batches = e.batches[1:]
		if b == nil {
			return nil, syscall.ENOBUFS
		}
		return b, nil
	}
	<-e.closed
	return nil, errors.New("use of closed socket")
}

func (e *replayEvents) Close() error {
	e.once.Do(func() { close(e.closed) })
	return nil
}

// expectationMessages returns the fixture's messages that announce a new
// expectation: what a dump of the live expectations answers with.
func expectationMessages(t *testing.T) []netlink.Message {
	var out []netlink.Message
	for _, m := range readFixture(t, "ftp-events.hex") {
		if m.Header.Type>>8 == unix.NFNL_SUBSYS_CTNETLINK_EXP && m.Header.Type&0xff == ipctnlMsgExpNew {
			out = append(out, m)
		}
	}
	if len(out) != 2 {
		t.Fatalf("%d new expectations in the fixture, want 2", len(out))
	}
	return out
}

func TestListReplay(t *testing.T) {
	r := &replay{dumps: [][]netlink.Message{expectationMessages(t)}}
	xs, err := List(context.Background(), withKernel(r))
	if err != nil || len(xs) != 2 || !r.closed {
		t.Fatalf("List = %v, %v (closed %v)", xs, err, r.closed)
	}
	if xs[0].Master.Src.Is6() || !xs[1].Master.Src.Is6() {
		t.Errorf("not sorted by master: %v", xs)
	}
	var b bytes.Buffer
	if err := WriteJSON(context.Background(), &b, withKernel(r)); err != nil {
		t.Fatal(err)
	}
	var got []Expectation
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || len(got) != 2 {
		t.Fatalf("WriteJSON wrote %s: %v", b.String(), err)
	}
	want, _ := json.Marshal(xs)
	if strings.TrimSpace(b.String()) != string(want) {
		t.Errorf("WriteJSON:\n%s\nList as JSON:\n%s", b.String(), want)
	}
	if xs, err := List(context.Background(), withKernel(r), WithHelper("irc")); err != nil || len(xs) != 0 {
		t.Errorf("List of helper irc = %v, %v", xs, err)
	}

	// A dump that fails part way is an error of List, in conntrack's words.
	r.dumpErr = syscall.EINTR
	_, err = List(context.Background(), withKernel(r))
	var e *Error
	if !errors.As(err, &e) || e.Op != "list expectations" || !errors.Is(err, syscall.EINTR) {
		t.Fatalf("failed dump: %v", err)
	}
	r.dumpErr = syscall.EINVAL // nfnetlink without ctnetlink
	if _, err := List(context.Background(), withKernel(r)); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("kernel without ctnetlink: %v", err)
	}
}

// Watch, played back: the session's events, then a loss (ENOBUFS) after
// which the watch subscribes again, lists, and reports the differences;
// then the namespace goes away.
func TestWatchReplay(t *testing.T) {
	fixture := readFixture(t, "ftp-events.hex")
	exps := expectationMessages(t)
	r := &replay{
		// At the start nothing is expected; after the loss, the IPv6
		// expectation is.
		dumps:         [][]netlink.Message{nil, exps[1:]},
		subscriptions: [][][]netlink.Message{{fixture[:len(fixture)/2], nil}, {fixture[len(fixture)/2:]}},
	}
	var mu sync.Mutex
	var evs []Event
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Watch(ctx, func(e Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() },
			withKernel(r), withNSPoll(10*time.Millisecond), WithReady(func() { close(ready) }))
	}()
	<-ready
	// The loss may overtake messages of the first subscription that were
	// still queued: they are then lost with it, as with the kernel.
	kinds := func() string {
		mu.Lock()
		defer mu.Unlock()
		var k []string
		for _, e := range evs {
			k = append(k, string(e.Type))
		}
		return strings.Join(k, " ")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(kinds(), "lost") || !strings.Contains(kinds(), "related") {
		if time.Now().After(deadline) {
			t.Fatalf("events: %s", kinds())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	r.isGone = true
	r.mu.Unlock()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNetNSGone) {
			t.Fatalf("Watch after the namespace went: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not notice that the namespace went")
	}
	if r.nsubs != 2 || r.ndumps != 2 {
		t.Errorf("%d subscriptions and %d dumps, want 2 and 2", r.nsubs, r.ndumps)
	}

	// Cancelled: Watch returns nil.
	r = &replay{dumps: [][]netlink.Message{nil}}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- Watch(ctx, func(Event) {}, withKernel(r), WithReady(cancel)) }()
	if err := <-done; err != nil {
		t.Fatalf("cancelled Watch: %v", err)
	}
}

// The helper of a related connection whose control connection the watch
// has not seen is asked of the kernel.
func TestHelperOfAsksTheKernel(t *testing.T) {
	var got []Event
	w := newTestWatcher("", &got)
	master := Tuple{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 40000, DPort: 21}
	w.k = &replay{helpers: map[Tuple]string{master: "ftp"}}
	if h := w.helperOf(master); h != "ftp" {
		t.Fatalf("helperOf = %q", h)
	}
	if h := w.helperOf(Tuple{SPort: 1}); h != "" {
		t.Fatalf("helperOf unknown = %q", h)
	}
}

// withKernel replaces the namespace's ctnetlink with k.
func withKernel(k ctnetlink) Option { return func(o *options) { o.kernel = k } }

// withNSPoll sets how often a watch checks its namespace.
func withNSPoll(d time.Duration) Option { return func(o *options) { o.nsPoll = d } }

// The namespace options open what they name, without a socket: a path
// (checked to be a network namespace, and watched for deletion), an fd, or
// nothing. An empty path is refused.
func TestOpenNamespace(t *testing.T) {
	k, err := open(collect([]Option{WithNetNS("/proc/self/ns/net")}))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.gone(); err != nil {
		t.Errorf("gone() of a live namespace: %v", err)
	}
	k.close()
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, opts := range [][]Option{{WithNetNSFd(int(f.Fd()))}, nil} {
		k, err := open(collect(opts))
		if err != nil || k.gone() != nil {
			t.Fatalf("open %v: %v", opts, err)
		}
		k.close()
	}
	var e *Error
	if _, err := open(collect([]Option{WithNetNS("")})); !errors.As(err, &e) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty path: %v", err)
	}
	if _, err := open(collect([]Option{WithNetNS("/etc/hostname")})); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("a file: %v", err)
	}
	if _, err := List(context.Background(), WithNetNS(t.TempDir()+"/nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing namespace: %v", err)
	}
	// A path that no longer names the namespace it opened: gone.
	n := &namespace{path: "/proc/self/ns/net", ino: 1}
	if err := n.gone(); !errors.Is(err, ErrNetNSGone) || !strings.Contains(err.Error(), "watch: /proc/self/ns/net: network namespace was deleted") {
		t.Errorf("gone() = %v", err)
	}
}

func TestOrderAndNames(t *testing.T) {
	a := Tuple{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPort: 1, DPort: 2}
	for _, b := range []Tuple{
		{Src: netip.MustParseAddr("192.0.2.9"), Dst: a.Dst, SPort: 1, DPort: 2},
		{Src: a.Src, Dst: a.Dst, SPort: 9, DPort: 2},
		{Src: a.Src, Dst: netip.MustParseAddr("192.0.2.9"), SPort: 1, DPort: 2},
		{Src: a.Src, Dst: a.Dst, SPort: 1, DPort: 9},
	} {
		if a.compare(b) >= 0 || b.compare(a) <= 0 {
			t.Errorf("%v not before %v", a, b)
		}
	}
	if a.compare(a) != 0 {
		t.Error("a tuple is not equal to itself")
	}
	for p, want := range map[uint8]string{6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "ipv6-icmp", 99: "99"} {
		if got := protoName(p); got != want {
			t.Errorf("protoName(%d) = %q", p, got)
		}
	}
	if s := (&Error{Op: "list expectations", Err: syscall.EPERM}).Error(); s != "list expectations: operation not permitted" {
		t.Errorf("Error() = %q", s)
	}
}

// WithReadBuffer reaches the subscription.
func TestReadBufferOption(t *testing.T) {
	if o := collect([]Option{WithReadBuffer(4096)}); o.readBuffer != 4096 {
		t.Fatalf("readBuffer = %d", o.readBuffer)
	}
}

// ReadUsage counts expectations and finds the control connections that
// have neither an expectation nor a data connection.
func TestReadUsageReplay(t *testing.T) {
	exps := expectationMessages(t)
	x, err := decodeExpectation(exps[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	quiet := Tuple{Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 40000, DPort: 21}
	served := Tuple{Src: netip.MustParseAddr("192.0.2.8"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 40001, DPort: 21}
	r := &replay{dumps: [][]netlink.Message{exps[:1]}, allFlows: []flow{
		{orig: x.Master, helper: "ftp"},
		{orig: quiet, helper: "ftp"},
		{orig: served, helper: "ftp"},
		{orig: Tuple{Src: served.Src, Dst: served.Dst, SPort: 50000, DPort: 50001}, related: true, master: served},
		{orig: Tuple{Src: served.Src, Dst: served.Dst, SPort: 22, DPort: 22}},
	}}
	u, err := ReadUsage(context.Background(), withKernel(r))
	if err != nil {
		t.Fatal(err)
	}
	if u.Expectations != 1 || len(u.Controls) != 3 || len(u.Quiet) != 1 || u.Quiet[0] != quiet || u.Entries != 5 {
		t.Fatalf("usage = %+v", u)
	}
	if s := u.String(); s != "5 of 65536 connections tracked, 1 expectations, 3 control connections (1 quiet)" {
		t.Errorf("String() = %q", s)
	}
}

// A long watch forgets control connections that have no live expectation
// and were last seen before the cutoff.
func TestWatchForgets(t *testing.T) {
	var got []Event
	w := newTestWatcher("ftp", &got)
	live := Tuple{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 1, DPort: 21}
	old := Tuple{Src: netip.MustParseAddr("192.0.2.3"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 2, DPort: 21}
	w.remember(live, "ftp")
	w.remember(old, "ftp")
	w.known[expKey{"ftp", live, Tuple{}}] = Expectation{Helper: "ftp", Master: live}
	w.forget(time.Now().Add(time.Minute))
	if _, ok := w.masters[old]; ok {
		t.Error("a control connection without expectations was kept")
	}
	if _, ok := w.masters[live]; !ok {
		t.Error("a control connection with a live expectation was forgotten")
	}
	if _, err := be16([]byte{1}); err == nil {
		t.Error("a short 16-bit integer decoded")
	}
	if _, err := be32([]byte{1, 2}); err == nil {
		t.Error("a short 32-bit integer decoded")
	}
}

// Cut deletes the control connections of the banned sources and the data
// connections they expected, passive (from the source) and active (to it),
// and nothing else: not another source's session, not the banned source's
// other connections.
func TestCut(t *testing.T) {
	banned, other := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.9")
	srv := netip.MustParseAddr("192.0.2.1")
	control := Tuple{Src: banned, Dst: srv, SPort: 40000, DPort: 21}
	passive := Tuple{Src: banned, Dst: srv, SPort: 40001, DPort: 50000}
	active := Tuple{Src: srv, Dst: banned, SPort: 20, DPort: 40002}
	ssh := Tuple{Src: banned, Dst: srv, SPort: 40003, DPort: 22}
	othersControl := Tuple{Src: other, Dst: srv, SPort: 40000, DPort: 21}
	othersData := Tuple{Src: other, Dst: srv, SPort: 40001, DPort: 50001}
	mapped := Tuple{Src: netip.MustParseAddr("::ffff:192.0.2.2"), Dst: netip.MustParseAddr("::ffff:192.0.2.1"), SPort: 40004, DPort: 21}
	r := &replay{allFlows: []flow{
		{orig: control, proto: 6, helper: "ftp"},
		{orig: passive, proto: 6, related: true, master: control},
		{orig: active, proto: 6, related: true, master: control},
		{orig: ssh, proto: 6},
		{orig: othersControl, proto: 6, helper: "ftp"},
		{orig: othersData, proto: 6, related: true, master: othersControl},
		{orig: mapped, proto: 6, helper: "ftp"},
	}}
	n, err := Cut(context.Background(), []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}, withKernel(r))
	if err != nil || n != 4 {
		t.Fatalf("Cut = %d, %v; want 4 deleted", n, err)
	}
	if want := []Tuple{control, passive, active, mapped}; !slices.Equal(r.deleted, want) {
		t.Fatalf("deleted %v, want %v", r.deleted, want)
	}
}

// Sessions groups each control connection with the data connections it
// expected, passive and active, with their counters both ways; a data
// connection of another session or none is not shown under it.
func TestSessions(t *testing.T) {
	cli, srv := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1")
	control := Tuple{Src: cli, Dst: srv, SPort: 40000, DPort: 21}
	passive := Tuple{Src: cli, Dst: srv, SPort: 40001, DPort: 50000}
	active := Tuple{Src: srv, Dst: cli, SPort: 20, DPort: 40002}
	other := Tuple{Src: netip.MustParseAddr("198.51.100.9"), Dst: srv, SPort: 1, DPort: 21}
	r := &replay{dumps: [][]netlink.Message{nil}, allFlows: []flow{
		{orig: passive, proto: 6, related: true, master: control, packetsOrig: 10, bytesOrig: 600, packetsReply: 20, bytesReply: 30000},
		{orig: control, proto: 6, helper: "ftp"},
		{orig: active, proto: 6, related: true, master: control, packetsOrig: 5, bytesOrig: 7000},
		{orig: other, proto: 6, helper: "ftp"},
		{orig: Tuple{Src: cli, Dst: srv, SPort: 40003, DPort: 22}, proto: 6},
	}}
	ss, err := Sessions(context.Background(), withKernel(r))
	if err != nil || len(ss) != 2 {
		t.Fatalf("Sessions = %+v, %v; want 2", ss, err)
	}
	s := ss[0]
	if s.Control != control || len(s.Data) != 2 || len(ss[1].Data) != 0 {
		t.Fatalf("session %+v", s)
	}
	// In tuple order: the server's active connection first.
	if d := s.Data[1]; d.Flow != passive || d.Mode != "passive" || d.Packets != 30 || d.Bytes != 30600 || d.BytesReply != 30000 {
		t.Errorf("passive data connection %+v", d)
	}
	if d := s.Data[0]; d.Flow != active || d.Mode != "active" || d.Bytes != 7000 {
		t.Errorf("active data connection %+v", d)
	}
}
