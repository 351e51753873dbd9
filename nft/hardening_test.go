package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string]string{
		"1024-65535": "", "50000-50000": "", "50100-50000": "want 1 <= LO <= HI", "0-10": `port "0"`,
		"50000": "want LO-HI", "a-b": `port "a"`, "1-70000": `port "70000"`,
	} {
		r, err := ParsePortRange(in)
		if want == "" {
			if err != nil || r.String() != in {
				t.Errorf("ParsePortRange(%q) = %v, %v", in, r, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), strings.Split(in, "-")[0]) {
			t.Errorf("ParsePortRange(%q) = %v, want error %q", in, err, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]string{
		"10/second": "", "600/minute": "", "10/hour": `unit "hour"`, "0/second": "want N from 1",
		"ten/second": "want N/second", "10": "want N/second", "-1/second": "want N/second",
	} {
		r, err := ParseRate(in)
		if want == "" {
			if err != nil || r.String() != in {
				t.Errorf("ParseRate(%q) = %v, %v", in, r, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseRate(%q) = %v, want error %q naming the value", in, err, want)
		}
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.0/24": "192.0.2.0/24", "198.51.100.7": "198.51.100.7/32", "2001:db8::/32": "2001:db8::/32",
		"192.0.2.1/24": "host bits set; did you mean 192.0.2.0/24?", "192.0.2.0/33": "not a CIDR",
		"example.org": "not an address or CIDR", "::ffff:192.0.2.0/120": "IPv4-mapped", "fe80::1%eth0": "not an address",
	} {
		p, err := ParseSource(in)
		got := p.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("ParseSource(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadSourceFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("# office\n192.0.2.0/24\n\n  2001:db8::/32   # v6\n198.51.100.7\n"), 0o644)
	ps, err := ReadSourceFile(good)
	if err != nil || len(ps) != 3 || ps[2] != netip.MustParsePrefix("198.51.100.7/32") {
		t.Fatalf("ReadSourceFile = %v, %v", ps, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("192.0.2.0/24\n10.0.0.1/8\n"), 0o644)
	if _, err := ReadSourceFile(bad); err == nil || !strings.Contains(err.Error(), bad+":2:") || !strings.Contains(err.Error(), "10.0.0.1/8") {
		t.Fatalf("bad file: %v, want file:line and the value", err)
	}
	if _, err := ReadSourceFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestRangesRoundTrip(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"192.0.2.0/25", "192.0.2.128/25", "192.0.2.7/32", "10.0.0.0/8", "203.0.113.9/32", "255.255.255.0/24"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	// The IPv6 networks among them go to the other family's set.
	rs := mergeRanges(append(ps, netip.MustParsePrefix("2001:db8::/32")), false)
	var got []string
	for _, r := range rs {
		got = append(got, r.String())
	}
	want := []string{"10.0.0.0/8", "192.0.2.0/24", "203.0.113.9", "255.255.255.0/24"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mergeRanges = %v, want %v", got, want)
	}
	// 192.0.2.0/24 and 192.0.3.0/25 are adjacent: one range that is no prefix.
	odd := mergeRanges([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("192.0.3.0/25")}, false)
	if len(odd) != 1 || odd[0].String() != "192.0.2.0-192.0.3.127" {
		t.Fatalf("adjacent ranges = %v", odd)
	}
	s := Set{Interval: true, Ranges: rs}
	els := s.elements()
	if !els[0].IntervalEnd || len(els) != 1+2*len(rs)-1 { // leading end; the last range has no end
		t.Fatalf("elements = %+v", els)
	}
	if back := rangesOf(els); !reflect.DeepEqual(back, rs) {
		t.Fatalf("rangesOf(elements) = %v, want %v", back, rs)
	}
	// IPv6, a range from the zero address (no leading end element) and one
	// to the top (no end element), decoded from elements in reverse order.
	v6 := mergeRanges(append([]netip.Prefix{netip.MustParsePrefix("::/16"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("ff00::/8")}, ps...), true)
	v6els := Set{Interval: true, Ranges: v6}.elements()
	if v6els[0].IntervalEnd || v6els[len(v6els)-1].IntervalEnd {
		t.Fatalf("IPv6 elements = %+v", v6els)
	}
	slices.Reverse(v6els)
	if back := rangesOf(v6els); !reflect.DeepEqual(back, v6) {
		t.Fatalf("rangesOf(IPv6 reversed) = %v, want %v", back, v6)
	}
	all := mergeRanges([]netip.Prefix{netip.MustParsePrefix("::/0")}, true)
	if els := (Set{Interval: true, Ranges: all}).elements(); len(els) != 1 || !reflect.DeepEqual(rangesOf(els), all) {
		t.Fatalf("::/0 elements = %+v", els)
	}
	for _, r := range append(append(rs, odd...), v6...) {
		var back AddrRange
		if err := back.UnmarshalText([]byte(r.String())); err != nil || back != r {
			t.Errorf("UnmarshalText(%q) = %v, %v", r, back, err)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"0.0.0.0/0":       "255.255.255.255",
		"10.0.0.0/8":      "10.255.255.255",
		"192.0.2.128/25":  "192.0.2.255",
		"192.0.2.7/32":    "192.0.2.7",
		"::/0":            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::/33":   "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::/127":  "2001:db8::1",
		"2001:db8::7/128": "2001:db8::7",
	} {
		if got := lastAddr(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
	// An element without an address (a foreign set's key) decodes to an
	// invalid range rather than a panic.
	if got := lastAddr(netip.Prefix{}); got.IsValid() {
		t.Errorf("lastAddr of the zero Prefix = %s, want the zero Addr", got)
	}
	if got := rangesOf([]element{{}}); len(got) != 1 || got[0].To.IsValid() {
		t.Errorf("rangesOf(an element without an address) = %v", got)
	}
}

func TestAdmitsNew(t *testing.T) {
	ssh := netip.MustParseAddr("192.0.2.50")
	c := DefaultConfig()
	if c.AdmitsNew(ssh, 22) || !c.AdmitsNew(ssh, 21) {
		t.Fatal("default config: want 21 admitted, 22 not")
	}
	c.Allow = []Service{{"tcp", 22}}
	if !c.AdmitsNew(ssh, 22) {
		t.Fatal("--allow tcp/22 does not admit 22")
	}
	c = DefaultConfig()
	c.Sources = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	c.PassivePorts = PortRange{50000, 50100}
	if c.AdmitsNew(ssh, 21) || c.AdmitsNew(ssh, 50000) || !c.AdmitsNew(netip.MustParseAddr("198.51.100.1"), 50050) {
		t.Fatal("source allowlist not applied")
	}
	// A control port decides alone: --allow behind it is never reached.
	c = DefaultConfig()
	c.Ports = []uint16{2121}
	c.Allow = []Service{{"tcp", 2121}}
	c.Sources = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	if c.AdmitsNew(ssh, 2121) {
		t.Fatal("a control port with a source outside the allowlist was admitted by a later --allow")
	}
	if !c.AdmitsNew(netip.MustParseAddr("::1"), 22) {
		t.Fatal("loopback must be admitted (iifname lo accept)")
	}
	c.Sources = append(c.Sources, netip.MustParsePrefix("fe80::/10"))
	if !c.AdmitsNew(netip.MustParseAddr("fe80::1%eth0"), 2121) {
		t.Fatal("a zoned link-local client inside the allowlist was not admitted")
	}
	c = DefaultConfig()
	c.Roles = []Role{RoleRouter}
	if !c.AdmitsNew(ssh, 22) {
		t.Fatal("a router-only table has no input chain and admits everything")
	}
	c = DefaultConfig()
	c.Policy = PolicyAccept
	if !c.AdmitsNew(ssh, 22) {
		t.Fatal("policy accept admits everything")
	}
}

func hardenedConfig() Config {
	c := DefaultConfig()
	c.Roles = []Role{RoleServer, RoleRouter}
	c.Ports = []uint16{21, 2121}
	c.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.7/32")}
	c.MaxConnPerSource = 2
	c.ConnRate = Rate{10, "second"}
	c.PassivePorts = PortRange{50000, 50100}
	c.RelatedPorts = PortRange{1024, 65535}
	return c
}

func TestStatusOfHardening(t *testing.T) {
	k := &fakekernel.Kernel{}
	cfg := hardenedConfig()
	rs := mustBuild(t, cfg)
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	if res, err := Apply(context.Background(), rs, WithKernel(k)); err != nil || res.Changed {
		t.Fatalf("second Apply = %+v, %v; want unchanged", res, err)
	}
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, r := range st.Sources {
		sources = append(sources, r.String())
	}
	if !st.Matches || st.MaxConnPerSource != 2 || st.ConnRate != cfg.ConnRate || st.PassivePorts != cfg.PassivePorts ||
		st.RelatedPorts != cfg.RelatedPorts || !reflect.DeepEqual(sources, []string{"192.0.2.0/24", "198.51.100.7", "2001:db8::/32"}) ||
		!reflect.DeepEqual(st.Roles, []Role{RoleServer, RoleRouter}) {
		t.Fatalf("status = %+v (sources %v)", st, sources)
	}
	// One more source adds one element to the set, and nothing else.
	cfg.Sources = append(cfg.Sources, netip.MustParsePrefix("203.0.113.0/24"))
	res, err := Apply(context.Background(), mustBuild(t, cfg), WithKernel(k))
	if err != nil || !res.Changed || res.Plan.Counts != (Counts{ElementsAdded: 1}) {
		t.Fatalf("Apply with a new source = %+v (%v), %v; want 1 set element added", res, res.Plan, err)
	}
}

func TestLargeSourceSetIsChunked(t *testing.T) {
	k := &fakekernel.Kernel{}
	cfg := DefaultConfig()
	for i := range 10000 {
		cfg.Sources = append(cfg.Sources, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32))
	}
	if _, err := Apply(context.Background(), mustBuild(t, cfg), WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	if k.Batches != 1 || k.Writes < 20000/setChunk {
		t.Fatalf("%d batches, %d element messages; want 1 batch, chunks of %d", k.Batches, len(k.State.Elems), setChunk)
	}
}

// ftpnft encodes set elements itself. What it sends decodes to the same
// elements, and so does google/nftables' encoding of them.
func TestElementsMessage(t *testing.T) {
	v4 := mergeRanges([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("240.0.0.0/4")}, false)
	v6 := mergeRanges([]netip.Prefix{netip.MustParsePrefix("::/16"), netip.MustParsePrefix("2001:db8::/32")}, true)
	for _, s := range []Set{{Name: "v4", Interval: true, Ranges: v4}, {Name: "v6", V6: true, Interval: true, Ranges: v6}} {
		els := s.elements()
		m := elementsMessage(elementsAdd, "ftpnft", s.Name, els)
		back, err := elementsOf([]netlink.Message{m})
		if err != nil || !reflect.DeepEqual(back, els) {
			t.Fatalf("%s: elementsOf(elementsMessage(%v)) = %v, %v", s.Name, els, back, err)
		}
		// Sized in advance, exactly: 10,000 networks are 20,000 elements.
		for _, table := range []string{"ftpnft", "t", "a-longer-table-name"} {
			if m := elementsMessage(elementsAdd, table, s.Name, els); len(m.Data) != cap(m.Data) {
				t.Errorf("%s in table %q: %d bytes in a buffer of %d", s.Name, table, len(m.Data), cap(m.Data))
			}
		}

		b, err := newBatch()
		if err != nil {
			t.Fatal(err)
		}
		theirs := make([]nftables.SetElement, len(els))
		for i, e := range els {
			theirs[i] = nftables.SetElement{Key: e.Key.AsSlice(), IntervalEnd: e.IntervalEnd}
		}
		table := &nftables.Table{Family: nftables.TableFamilyINet, Name: "ftpnft"}
		if err := b.SetAddElements(&nftables.Set{Table: table, Name: s.Name, Interval: true}, theirs); err != nil {
			t.Fatal(err)
		}
		msgs, err := b.messages()
		if err != nil {
			t.Fatal(err)
		}
		if back, err := elementsOf(msgs); err != nil || !reflect.DeepEqual(back, els) {
			t.Fatalf("%s: google/nftables' encoding decodes to %v, %v; want %v", s.Name, back, err, els)
		}
	}
	if _, err := elementsOf([]netlink.Message{elementsMessage(elementsAdd, "ftpnft", "x", []element{{}})}); err == nil {
		t.Fatal("an element without an address decoded without error")
	}
}

// A dump that fails part way ends with NLMSG_DONE carrying the error; a dump
// is then an error, not a short answer.
func TestDumpFailedPartWay(t *testing.T) {
	end := func(code int32) []netlink.Message {
		data := binary.NativeEndian.AppendUint32(nil, uint32(code))
		return []netlink.Message{
			{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE), Flags: netlink.Multi}, Data: make([]byte, 4)},
			{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}, Data: data},
		}
	}
	req := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE), Flags: netlink.Request | netlink.Dump}}
	for _, code := range []int32{0, -int32(syscall.EINTR)} {
		c, release, err := connect(context.Background(), []Option{withDial(func([]netlink.Message) ([]netlink.Message, error) { return end(code), nil })})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := c.dump(req)
		release()
		if code == 0 && (err != nil || len(ms) != 2) {
			t.Errorf("complete dump: %d messages, %v", len(ms), err)
		}
		if code != 0 && !errors.Is(err, syscall.EINTR) {
			t.Errorf("dump ended by error %d: %d messages, %v; want EINTR", code, len(ms), err)
		}
	}
}
