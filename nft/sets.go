package nft

import (
	"cmp"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ftpnft/ftpnft/internal/input"
)

// Set is a named set of addresses in ftpnft's table: an interval set of
// allowed sources, or a dynamic set that per-source limits fill at run time.
type Set struct {
	Name string
	// V6 selects the key type: ipv6_addr, otherwise ipv4_addr.
	V6 bool
	// Ranges are the elements of an interval set, merged and sorted.
	Ranges []AddrRange
	// Interval is "flags interval": the set holds Ranges.
	Interval bool
	// Dynamic is "flags dynamic": rules add elements (per-source state).
	Dynamic bool
	// Timeout, when not 0, is "flags timeout" with this element timeout.
	Timeout time.Duration
	// Size bounds a dynamic set.
	Size uint32
	// Runtime is "flags timeout" without a default timeout, on an
	// interval set whose elements are run-time state with timeouts of
	// their own (bans): they are not part of the configuration, and
	// install neither compares nor changes them.
	Runtime bool
	// otherKey names the key type of a set read back from the kernel that
	// holds no addresses: not one of ftpnft's.
	otherKey string
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct{ From, To netip.Addr }

// String formats r as a CIDR when it is one, else as "FROM-TO".
func (r AddrRange) String() string {
	if p, ok := r.prefix(); ok {
		if p.Bits() == p.Addr().BitLen() {
			return p.Addr().String()
		}
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// MarshalText makes a range read as in nft syntax in JSON.
func (r AddrRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads what MarshalText writes: an address, a CIDR or
// "FROM-TO".
func (r *AddrRange) UnmarshalText(b []byte) error {
	s := string(b)
	if from, to, ok := strings.Cut(s, "-"); ok {
		f, err1 := netip.ParseAddr(from)
		t, err2 := netip.ParseAddr(to)
		if err1 != nil || err2 != nil || f.Is4() != t.Is4() || t.Less(f) {
			return fmt.Errorf("address range %s: want FROM-TO", input.Quote(s))
		}
		*r = AddrRange{f, t}
		return nil
	}
	p, err := ParseSource(s)
	if err != nil {
		return err
	}
	*r = AddrRange{p.Addr(), lastAddr(p)}
	return nil
}

// prefix returns r as a prefix, if it is exactly one: the only candidate
// is the prefix of the bits From and To share.
func (r AddrRange) prefix() (netip.Prefix, bool) {
	from, to := r.From.AsSlice(), r.To.AsSlice()
	shared := 0
	for i := range from {
		if x := from[i] ^ to[i]; x != 0 {
			shared += bits.LeadingZeros8(x)
			break
		}
		shared += 8
	}
	p := netip.PrefixFrom(r.From, shared)
	if p.Masked() == p && lastAddr(p) == r.To {
		return p, true
	}
	return netip.Prefix{}, false
}

// lastAddr returns the highest address of p; of an invalid prefix, the
// zero Addr.
func lastAddr(p netip.Prefix) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

// setHostBits sets the bits of address b after the first n.
func setHostBits(b []byte, n int) {
	for i := n; i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
}

// mergeRanges turns the prefixes of one family (IPv6 if v6, else IPv4)
// into sorted, disjoint, non-adjacent ranges, as an nftables interval set
// must hold them.
func mergeRanges(prefixes []netip.Prefix, v6 bool) []AddrRange {
	n := 0
	for _, p := range prefixes {
		if p.Addr().Is6() == v6 {
			n++
		}
	}
	rs := make([]AddrRange, 0, n)
	for _, p := range prefixes {
		if p.Addr().Is6() == v6 {
			rs = append(rs, AddrRange{p.Masked().Addr(), lastAddr(p)})
		}
	}
	byStart := func(a, b AddrRange) int { return a.From.Compare(b.From) }
	if !slices.IsSortedFunc(rs, byStart) { // lists are often sorted already
		slices.SortFunc(rs, byStart)
	}
	out := rs[:0] // merged in place: out never overtakes r
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.To.Next(); r.From.Compare(last.To) <= 0 || (next.IsValid() && next == r.From) {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// element is one element of an interval set: an address that starts a
// range, or (IntervalEnd) the first address after one.
type element struct {
	Key         netip.Addr
	IntervalEnd bool
	// Timeout is the element's own timeout (a ban's); Expires, read back,
	// how long it has left. 0: none.
	Timeout, Expires time.Duration
}

// elements encodes an interval set's ranges as nft does: each range is a
// start element and an end element (the address after the range, flagged
// as interval end), and a leading interval end at the zero address unless
// the first range starts there.
func (s Set) elements() []element {
	els := make([]element, 0, 2*len(s.Ranges)+1)
	if zero, ok := zeroEnd(s.Ranges); ok {
		els = append(els, zero)
	}
	return append(els, rangeElements(s.Ranges)...)
}

// zeroEnd is the interval end at the zero address that nft puts before
// ranges that do not start there; ok is false when there is none.
func zeroEnd(ranges []AddrRange) (e element, ok bool) {
	if len(ranges) == 0 || ranges[0].From.IsUnspecified() {
		return element{}, false
	}
	zero := netip.IPv4Unspecified()
	if ranges[0].From.Is6() {
		zero = netip.IPv6Unspecified()
	}
	return element{Key: zero, IntervalEnd: true}, true
}

// rangeElements encodes each range as its start element and, unless it
// runs to the last address, its end element.
func rangeElements(ranges []AddrRange) []element {
	els := make([]element, 0, 2*len(ranges))
	for _, r := range ranges {
		els = append(els, element{Key: r.From})
		if next := r.To.Next(); next.IsValid() {
			els = append(els, element{Key: next, IntervalEnd: true})
		}
	}
	return els
}

// rangeChanges compares two sorted lists of disjoint ranges: the ranges
// of got that want lacks, and those of want that got lacks.
func rangeChanges(got, want []AddrRange) (del, add []AddrRange) {
	i, j := 0, 0
	for i < len(got) && j < len(want) {
		switch c := cmp.Or(got[i].From.Compare(want[j].From), got[i].To.Compare(want[j].To)); {
		case c == 0:
			i++
			j++
		case c < 0:
			del = append(del, got[i])
			i++
		default:
			add = append(add, want[j])
			j++
		}
	}
	return append(del, got[i:]...), append(add, want[j:]...)
}

// rangesOf decodes interval set elements read back from the kernel, in any
// order.
func rangesOf(els []element) []AddrRange {
	out := make([]AddrRange, 0, len(els)/2+1)
	eachRange(els, func(_ element, r AddrRange) { out = append(out, r) })
	return out
}

// eachRange pairs interval set elements, in any order, and calls f with
// each range and the element that starts it.
func eachRange(els []element, f func(start element, r AddrRange)) {
	els = slices.Clone(els)
	slices.SortFunc(els, func(a, b element) int {
		// At one address the end of a range comes before the start of
		// the next: adjacent ranges (added by hand) decode as two.
		return cmp.Or(a.Key.Compare(b.Key), cmp.Compare(boolInt(b.IntervalEnd), boolInt(a.IntervalEnd)))
	})
	for i, e := range els {
		if e.IntervalEnd {
			continue
		}
		to := lastAddr(netip.PrefixFrom(e.Key, 0)) // open to the end
		if i+1 < len(els) && els[i+1].IntervalEnd {
			to = els[i+1].Key.Prev()
		}
		f(e, AddrRange{e.Key, to})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// text renders the set in nft syntax.
func (s Set) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.keyType())
	if s.Size > 0 {
		fmt.Fprintf(&b, "\t\tsize %d\n", s.Size)
	}
	if f := s.flags(); f != "" {
		fmt.Fprintf(&b, "\t\tflags %s\n", f)
	}
	if s.Timeout > 0 {
		fmt.Fprintf(&b, "\t\ttimeout %ds\n", int(s.Timeout.Seconds()))
	}
	if len(s.Ranges) > 0 {
		items := make([]string, len(s.Ranges))
		for i, r := range s.Ranges {
			items[i] = r.String()
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(items, ",\n\t\t\t     "))
	}
	b.WriteString("\t}\n")
	return b.String()
}

// declaration is the set's definition in nft's one-line syntax, without
// elements: "{ type ipv4_addr; flags interval; }".
func (s Set) declaration() string {
	d := "{ type " + s.keyType() + ";"
	if s.Size > 0 {
		d += fmt.Sprintf(" size %d;", s.Size)
	}
	if f := s.flags(); f != "" {
		d += " flags " + f + ";"
	}
	if s.Timeout > 0 {
		d += fmt.Sprintf(" timeout %ds;", int(s.Timeout.Seconds()))
	}
	return d + " }"
}

// definition is what the kernel cannot change in a set that exists: its
// key type, flags, timeout and size.
func (s Set) definition() string {
	return fmt.Sprintf("%s %s %v %d", s.keyType(), s.flags(), s.Timeout, s.Size)
}

// holdsRanges reports whether s is an interval set of addresses from the
// configuration, whose elements ftpnft reads as ranges.
func (s Set) holdsRanges() bool { return s.Interval && s.otherKey == "" && !s.Runtime }

func (s Set) keyType() string {
	if s.otherKey != "" {
		return s.otherKey
	}
	if s.V6 {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

func (s Set) flags() string {
	var f []string
	if s.Interval {
		f = append(f, "interval")
	}
	if s.Dynamic {
		f = append(f, "dynamic")
	}
	if s.Timeout > 0 || s.Runtime {
		f = append(f, "timeout")
	}
	return strings.Join(f, ",")
}

// fingerprint describes the set's definition and, for interval sets, its
// elements; a dynamic set's elements are run-time state and left out.
func (s Set) fingerprint() []byte {
	size := 128
	if s.holdsRanges() {
		size += 32 * len(s.Ranges)
	}
	b := fmt.Appendf(make([]byte, 0, size), "set %s %s flags=%s timeout=%v size=%d", s.Name, s.keyType(), s.flags(), s.Timeout, s.Size)
	if s.holdsRanges() {
		// The addresses as bytes: a 10,000-range set is compared on every
		// re-install, and printing them cost more than reading them.
		b = append(b, ' ')
		for _, r := range s.Ranges {
			from, to := r.From.As16(), r.To.As16()
			b = append(append(b, from[:]...), to[:]...)
		}
	}
	return b
}

// prefixes returns the prefixes that cover r exactly, in order.
func (r AddrRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for from := r.From; from.IsValid() && from.Compare(r.To) <= 0; {
		// The largest prefix that starts at from and ends within r.
		bits := from.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(from, bits-1)
			if p.Masked().Addr() != from || lastAddr(p).Compare(r.To) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(from, bits)
		out = append(out, p)
		from = lastAddr(p).Next()
	}
	return out
}
