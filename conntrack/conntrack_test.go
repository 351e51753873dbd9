package conntrack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// readFixture reads netlink messages captured from the kernel (one hex
// message per line) during an FTP session through ftpnft: a passive listing
// over IPv4, then an active download over IPv6.
func readFixture(t testing.TB, name string) []netlink.Message {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []netlink.Message
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		b, err := hex.DecodeString(strings.TrimSpace(s.Text()))
		if err != nil {
			t.Fatal(err)
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return ms
}

// The reference for decodeExpectation: github.com/ti-mo/conntrack's
// decoding, converted field by field.
func expectationOf(x ct.Expect) Expectation {
	e := Expectation{
		ID:       x.ID,
		Helper:   x.HelpName,
		Proto:    protoName(x.Tuple.Proto.Protocol),
		Timeout:  x.Timeout,
		Master:   tupleOf(x.TupleMaster),
		Expected: tupleOf(x.Tuple),
		Mask:     tupleOf(x.Mask),
		Zone:     x.Zone,
		Class:    x.Class,
		Flags:    []string{},
	}
	for _, f := range expectFlags {
		if x.Flags&f.bit != 0 {
			e.Flags = append(e.Flags, f.name)
		}
	}
	if x.NAT.Tuple.IP.SourceAddress.IsValid() || x.NAT.Tuple.IP.DestinationAddress.IsValid() {
		dir := "original"
		if x.NAT.Direction {
			dir = "reply"
		}
		e.NAT = &NAT{Dir: dir, Tuple: tupleOf(x.NAT.Tuple)}
	}
	return e
}

func newTestWatcher(helper string, got *[]Event) *watcher {
	return &watcher{
		o:       collect([]Option{WithHelper(helper)}),
		handle:  func(e Event) { *got = append(*got, e) },
		known:   map[expKey]Expectation{},
		masters: map[Tuple]master{},
	}
}

func TestDecodeKernelEvents(t *testing.T) {
	var got []Event
	w := newTestWatcher("ftp", &got)
	for _, m := range readFixture(t, "ftp-events.hex") {
		w.message(m)
	}
	want := []string{
		"[NEW] ftp tcp expect 192.0.2.2:* -> 192.0.2.1:55828 for control 192.0.2.2:56786 -> 192.0.2.1:21 timeout 300s",
		"[DESTROY] ftp tcp expect 192.0.2.2:* -> 192.0.2.1:55828 for control 192.0.2.2:56786 -> 192.0.2.1:21 timeout 300s",
		"[RELATED] ftp tcp data 192.0.2.2:41880 -> 192.0.2.1:55828 admitted for control 192.0.2.2:56786 -> 192.0.2.1:21",
		"[NEW] ftp tcp expect [2001:db8::1]:* -> [2001:db8::2]:56539 for control [2001:db8::2]:52442 -> [2001:db8::1]:21 timeout 300s",
		"[DESTROY] ftp tcp expect [2001:db8::1]:* -> [2001:db8::2]:56539 for control [2001:db8::2]:52442 -> [2001:db8::1]:21 timeout 300s",
		"[RELATED] ftp tcp data [2001:db8::1]:20 -> [2001:db8::2]:56539 admitted for control [2001:db8::2]:52442 -> [2001:db8::1]:21",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	x := got[0].Expectation
	if x.Mask.DPort != 0xffff || x.Mask.SPort != 0 || x.Mask.Src != netip.MustParseAddr("255.255.255.255") || x.Class != 0 || x.NAT != nil {
		t.Errorf("expectation fields: %+v", x)
	}

	// Another helper's filter sees nothing of the ftp session.
	var none []Event
	w = newTestWatcher("irc", &none)
	for _, m := range readFixture(t, "ftp-events.hex") {
		w.message(m)
	}
	if len(none) != 0 {
		t.Fatalf("helper filter irc let through %v", none)
	}
}

// unrelated returns a copy of a new-connection message without its helper
// (CTA_HELP) and without IPS_EXPECTED in its status: what the kernel sends
// for any other new connection.
func unrelated(t *testing.T, m netlink.Message) netlink.Message {
	t.Helper()
	out := bytes.Clone(m.Data[:4])
	for b := m.Data[4:]; len(b) > 0; {
		l := int(binary.NativeEndian.Uint16(b))
		attr := bytes.Clone(b[:l])
		switch binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case ctaHelp:
			attr = nil
		case ctaStatus:
			binary.BigEndian.PutUint32(attr[4:], binary.BigEndian.Uint32(attr[4:])&^ipsExpected)
		}
		out = append(out, attr...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		b = b[min(nlio.Align(l), len(b)):]
	}
	m.Data = out
	return m
}

// TestMayRelate: the watch's pre-filter lets through every new connection
// of the FTP session (control connections with a helper, data connections
// it expected) and skips the same messages without helper and expected
// status, which the full decoding would have reported nothing for.
func TestMayRelate(t *testing.T) {
	n := 0
	for _, m := range readFixture(t, "ftp-events.hex") {
		if m.Header.Type>>8 != unix.NFNL_SUBSYS_CTNETLINK {
			continue
		}
		n++
		if !mayRelate(m.Data) {
			t.Errorf("message %d skipped: %x", n, m.Data)
		}
		plain := unrelated(t, m)
		if mayRelate(plain.Data) {
			t.Errorf("message %d without helper and expected status let through", n)
		}
		var ev ct.Event
		if err := ev.Unmarshal(plain); err != nil || ev.Flow.Helper.Name != "" || ev.Flow.Status.Expected() {
			t.Errorf("message %d: the stripped copy still decodes with helper %q, status %v (%v)", n, ev.Flow.Helper.Name, ev.Flow.Status, err)
		}
		var got []Event
		w := newTestWatcher("", &got)
		w.message(plain)
		if len(got) != 0 || len(w.masters) != 0 {
			t.Errorf("message %d: the stripped copy gave events %v, masters %v", n, got, w.masters)
		}
	}
	if n != 4 {
		t.Fatalf("%d new-connection messages in the fixture, want 4", n)
	}
	for _, malformed := range [][]byte{nil, {2, 0, 0}, {2, 0, 0, 0, 9, 0}} {
		if !mayRelate(malformed) {
			t.Errorf("malformed %x skipped; it must be left to the full decoding", malformed)
		}
	}
}

func TestEventJSON(t *testing.T) {
	var got []Event
	w := newTestWatcher("", &got)
	for _, m := range readFixture(t, "ftp-events.hex") {
		w.message(m)
	}
	got = append(got, Event{Type: EventLost, Resynced: 3})
	want := map[EventType][]string{
		EventNew:     {"event", "id", "helper", "proto", "timeout", "master", "expected", "mask", "zone", "class", "flags"},
		EventDestroy: {"event", "id", "helper", "proto", "timeout", "master", "expected", "mask", "zone", "class", "flags"},
		EventRelated: {"event", "helper", "proto", "master", "flow"},
		EventLost:    {"event", "resynced"},
	}
	for _, e := range got {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) != len(want[e.Type]) {
			t.Errorf("%s: fields %v, want %v", e.Type, m, want[e.Type])
		}
		for _, k := range want[e.Type] {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: no field %q in %s", e.Type, k, b)
			}
		}
		if m["event"] != string(e.Type) {
			t.Errorf("event field %v, want %s", m["event"], e.Type)
		}
	}
	b, _ := json.Marshal(got[2])
	const related = `{"event":"related","helper":"ftp","proto":"tcp","master":{"src":"192.0.2.2","dst":"192.0.2.1","sport":56786,"dport":21},"flow":{"src":"192.0.2.2","dst":"192.0.2.1","sport":41880,"dport":55828}}`
	if string(b) != related {
		t.Errorf("related JSON:\n got %s\nwant %s", b, related)
	}
}

func TestReconcileAfterLoss(t *testing.T) {
	x := func(port uint16) Expectation {
		return Expectation{Helper: "ftp", Proto: "tcp",
			Master:   Tuple{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 50000 + port, 21},
			Expected: Tuple{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 0, port}}
	}
	var got []Event
	w := newTestWatcher("ftp", &got)
	w.reconcile([]Expectation{x(1), x(2)}, false)
	if len(got) != 0 {
		t.Fatalf("initial sync reported %v", got)
	}
	// While events were lost, 1 went away and 3 appeared.
	w.reconcile([]Expectation{x(2), x(3)}, true)
	if len(got) != 3 || got[0].Type != EventLost || got[0].Resynced != 2 {
		t.Fatalf("after loss: %v", got)
	}
	kinds := map[EventType]uint16{}
	for _, e := range got[1:] {
		kinds[e.Type] = e.Expectation.Expected.DPort
	}
	if kinds[EventNew] != 3 || kinds[EventDestroy] != 1 {
		t.Fatalf("resync differences: %v", got[1:])
	}
}

func TestTupleString(t *testing.T) {
	for _, tt := range []struct {
		t    Tuple
		want string
	}{
		{Tuple{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 0, 21}, "192.0.2.1:* -> 192.0.2.2:21"},
		{Tuple{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 20, 5000}, "[2001:db8::1]:20 -> [2001:db8::2]:5000"},
	} {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// FuzzDecodeEvent feeds arbitrary netlink messages to the decoding a watch
// does: it must never panic, whatever the kernel (or a fuzzer) sends, and
// every event must encode as valid JSON.
func FuzzDecodeEvent(f *testing.F) {
	for _, m := range readFixture(f, "ftp-events.hex") {
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		var got []Event
		w := newTestWatcher("", &got)
		w.message(m)
		if m.Header.Type>>8 == unix.NFNL_SUBSYS_CTNETLINK && !mayRelate(m.Data) {
			// Skipped by the pre-filter: the full decoding must agree
			// that the connection has no helper and was not expected.
			var ev ct.Event
			if ev.Unmarshal(m) == nil && ev.Flow != nil && (ev.Flow.Helper.Name != "" || ev.Flow.Status.Expected()) {
				t.Fatalf("pre-filter skipped a connection with helper %q, status %v: %x", ev.Flow.Helper.Name, ev.Flow.Status, b)
			}
		}
		for _, e := range got {
			_ = e.String()
			if b, err := e.MarshalJSON(); err != nil || !json.Valid(b) {
				t.Fatalf("event %v does not encode: %q, %v", e, b, err)
			}
		}
	})
}

// The error contract of the package doc: errors.Is finds the cause.
func TestErrors(t *testing.T) {
	if _, err := List(context.Background(), WithNetNS(filepath.Join(t.TempDir(), "nope"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("List in a missing namespace: %v, want os.ErrNotExist", err)
	}
	for _, tc := range []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.EPERM, os.ErrPermission},
		{syscall.EPROTONOSUPPORT, errors.ErrUnsupported},
		{syscall.EINVAL, errors.ErrUnsupported},
	} {
		err := unsupported(&netlink.OpError{Op: "receive", Err: tc.errno})
		if !errors.Is(err, tc.want) || !errors.Is(err, tc.errno) {
			t.Errorf("kernel answering %v: %v, want errors.Is %v", tc.errno, err, tc.want)
		}
	}
}

// decodeLikeTiMo decodes an expectation message and checks that
// github.com/ti-mo/conntrack reads the same, field by field.
func decodeLikeTiMo(t *testing.T, m netlink.Message) Expectation {
	t.Helper()
	var ev ct.Event
	if err := ev.Unmarshal(m); err != nil || ev.Expect == nil {
		t.Fatalf("ti-mo: %v", err)
	}
	got, err := decodeExpectation(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if want := expectationOf(*ev.Expect); !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n %+v\nti-mo decodes\n %+v", got, want)
	}
	return got
}

// decodeExpectation reads the kernel's expectation messages as
// github.com/ti-mo/conntrack does.
func TestDecodeExpectationMatchesTiMo(t *testing.T) {
	n := 0
	for _, m := range readFixture(t, "ftp-events.hex") {
		if m.Header.Type>>8 != unix.NFNL_SUBSYS_CTNETLINK_EXP {
			continue
		}
		decodeLikeTiMo(t, m)
		n++
	}
	if n != 4 {
		t.Fatalf("%d expectation messages in the fixture, want 4", n)
	}
}

// expectationMessage encodes an expectation message as the kernel does,
// with every field that the fixture's expectations leave at zero: flags,
// zone, class and NAT, and an attribute this package does not know.
func expectationMessage(t *testing.T, src, dst netip.Addr, helper string, flags, natDir uint32) netlink.Message {
	t.Helper()
	tuple := func(ae *netlink.AttributeEncoder, typ uint16, src, dst netip.Addr, sport, dport uint16) {
		ae.Nested(typ, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
				s, d := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
				if src.Is6() {
					s, d = ctaIPv6Src, ctaIPv6Dst
				}
				ae.Bytes(s, src.AsSlice())
				ae.Bytes(d, dst.AsSlice())
				return nil
			})
			ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
				ae.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
				ae.Uint16(ctaProtoSrcPort, sport)
				ae.Uint16(ctaProtoDstPort, dport)
				return nil
			})
			return nil
		})
	}
	all := netip.MustParseAddr("255.255.255.255")
	if src.Is6() {
		all = netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	tuple(ae, ctaExpectMaster, src, dst, 40000, 21)
	tuple(ae, ctaExpectTuple, src, dst, 0, 50000)
	tuple(ae, ctaExpectMask, all, all, 0, 0xffff)
	ae.Uint32(ctaExpectTimeout, 42)
	ae.Uint32(ctaExpectID, 7)
	ae.String(ctaExpectHelpName, helper)
	ae.Uint16(ctaExpectZone, 5)
	ae.Uint32(ctaExpectFlags, flags)
	ae.Uint32(ctaExpectClass, 1)
	ae.Nested(ctaExpectNAT, func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(ctaExpectNATDir, natDir)
		tuple(ae, ctaExpectNATTuple, dst, src, 0, 50001)
		return nil
	})
	ae.String(11, "ftp") // CTA_EXPECT_FN
	data, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK_EXP<<8 | ipctnlMsgExpNew)},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

func TestDecodeExpectationAllFields(t *testing.T) {
	for _, m := range []netlink.Message{
		expectationMessage(t, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), "ftp", 3, 1),
		expectationMessage(t, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), "irc", 4, 0),
	} {
		got := decodeLikeTiMo(t, m)
		if got.NAT == nil || len(got.Flags) == 0 || got.Zone != 5 || got.Class != 1 || got.ID != 7 || got.Timeout != 42 {
			t.Errorf("fields lost: %+v", got)
		}
	}
	// Truncated or mis-sized attributes are errors, not zero values.
	m := expectationMessage(t, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), "ftp", 0, 0)
	for _, n := range []int{2, 9, 40, len(m.Data) - 1} {
		if _, err := decodeExpectation(m.Data[:n]); !errors.Is(err, errMalformed) {
			t.Errorf("message cut to %d of %d bytes: %v, want errMalformed", n, len(m.Data), err)
		}
	}
}

// The hand-written JSON is what encoding/json makes of the struct tags.
func TestExpectationJSONMatchesReflection(t *testing.T) {
	type plain Expectation // without the MarshalJSON method
	var xs []Expectation
	for _, m := range readFixture(t, "ftp-events.hex") {
		if x, err := decodeExpectation(m.Data); err == nil && m.Header.Type>>8 == unix.NFNL_SUBSYS_CTNETLINK_EXP {
			xs = append(xs, x)
		}
	}
	for _, m := range []netlink.Message{
		expectationMessage(t, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), "ftp", 7, 1),
		expectationMessage(t, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), "a<b>&\"c\\\x01é\xff", 0, 0),
	} {
		x, err := decodeExpectation(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		xs = append(xs, x)
	}
	xs = append(xs, Expectation{}, Expectation{Flags: []string{}, Master: Tuple{Src: netip.MustParseAddr("fe80::1%eth0")}})
	var plains []plain
	for _, x := range xs {
		got, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(plain(x))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("JSON\n %s\nencoding/json\n %s", got, want)
		}
		plains = append(plains, plain(x))
	}
	for _, n := range []int{0, 1, len(xs)} {
		var buf bytes.Buffer
		a := newArray(&buf)
		for _, x := range xs[:n] {
			a.add(x)
		}
		if err := a.close(); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(plains[:n])
		if n == 0 {
			want = []byte("[]")
		}
		if got := buf.String(); got != string(want)+"\n" {
			t.Errorf("array of %d\n %s\nencoding/json\n %s", n, got, want)
		}
	}
}
