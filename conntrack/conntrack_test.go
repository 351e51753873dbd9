package conntrack

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
)

// readFixture decodes netlink messages captured from the kernel (one hex
// message per line) during an FTP session through ftpnft: a passive listing
// over IPv4, then an active download over IPv6.
func readFixture(t *testing.T, name string) []ct.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []ct.Event
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
		var ev ct.Event
		if err := ev.Unmarshal(m); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
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
	for _, ev := range readFixture(t, "ftp-events.hex") {
		w.event(ev)
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
	for _, ev := range readFixture(t, "ftp-events.hex") {
		w.event(ev)
	}
	if len(none) != 0 {
		t.Fatalf("helper filter irc let through %v", none)
	}
}

func TestEventJSON(t *testing.T) {
	var got []Event
	w := newTestWatcher("", &got)
	for _, ev := range readFixture(t, "ftp-events.hex") {
		w.event(ev)
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
// does: it must never panic, whatever the kernel (or a fuzzer) sends.
func FuzzDecodeEvent(f *testing.F) {
	fx, err := os.Open(filepath.Join("testdata", "ftp-events.hex"))
	if err != nil {
		f.Fatal(err)
	}
	s := bufio.NewScanner(fx)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if b, err := hex.DecodeString(strings.TrimSpace(s.Text())); err == nil {
			f.Add(b)
		}
	}
	fx.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		var ev ct.Event
		if err := ev.Unmarshal(m); err != nil {
			return
		}
		var got []Event
		w := newTestWatcher("", &got)
		w.event(ev)
		for _, e := range got {
			_ = e.String()
			if _, err := e.MarshalJSON(); err != nil {
				t.Fatalf("event %v does not encode: %v", e, err)
			}
		}
	})
}

// The error contract of the package doc: errors.Is finds the cause.
func TestErrors(t *testing.T) {
	if _, err := List(WithNetNS(filepath.Join(t.TempDir(), "nope"))); !errors.Is(err, os.ErrNotExist) {
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
