package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A stmt is one nft statement of a rule. Each knows its nft text, the
// expressions the nft tool would generate for that text, so that Render
// and Apply cannot drift apart (the netns tests load both and compare), and
// how to recognise itself in expressions read back from the kernel.
type stmt interface {
	text() string
	exprs() []expr.Any
	// recognise guesses, on any value of the type, the statement that
	// e starts with; decodeStmts keeps a guess only when the guess's own
	// exprs equal e's first expressions, so a guess may be rough.
	recognise(e []expr.Any) (stmt, bool)
}

// stmtKinds lists every statement type, for decodeStmts.
var stmtKinds = []stmt{
	l4proto{}, dport{}, dportRange{}, ctState{}, ctStatusDNAT{}, nfproto{}, daddr{}, fibDaddrLocal{},
	dnatTo{}, masquerade{}, ctHelperIs{}, ctHelperSet{}, iifname{}, oifname{}, icmpv6Types{},
	counter{}, verdict{}, saddrIn{}, connLimit{}, rateOver{}, rejectReset{}, jump{},
	nftraceSet{}, logGroup{}, sport{}, tcpSYN{},
}

// decodeStmts recognises the statements of a rule read back from the
// kernel; ok is false when some expressions are none of ftpnft's
// statements. At each point the longest statement that re-encodes to the
// expressions there is taken.
func decodeStmts(e []expr.Any) (stmts []stmt, ok bool) {
	enc := make([][]byte, len(e)) // e's encodings, made when first compared
	for i := 0; i < len(e); {
		var best stmt
		n := 0
		for _, k := range stmtKinds {
			s, ok := k.recognise(e[i:])
			if !ok {
				continue
			}
			if want := s.exprs(); len(want) > n && len(want) <= len(e)-i && sameExprs(want, e, i, enc) {
				best, n = s, len(want)
			}
		}
		if best == nil {
			return stmts, false
		}
		stmts = append(stmts, best)
		i += n
	}
	return stmts, true
}

// sameExprs reports whether want encodes as e[i:i+len(want)] does, counter
// values aside; enc caches e's encodings.
func sameExprs(want, e []expr.Any, i int, enc [][]byte) bool {
	for j, w := range want {
		if enc[i+j] == nil {
			b, err := expr.Marshal(byte(nftables.TableFamilyINet), canonical(e[i+j]))
			if err != nil {
				return false
			}
			enc[i+j] = b
		}
		x, err := expr.Marshal(byte(nftables.TableFamilyINet), canonical(w))
		if err != nil || !bytes.Equal(x, enc[i+j]) {
			return false
		}
	}
	return true
}

// at returns e[i] as a T, if e has an i-th expression of that type.
func at[T expr.Any](e []expr.Any, i int) (T, bool) {
	var zero T
	if i >= len(e) {
		return zero, false
	}
	x, ok := e[i].(T)
	return x, ok
}

// cmpData returns the data of the comparison at e[i], or nil.
func cmpData(e []expr.Any, i int) []byte {
	if c, ok := at[*expr.Cmp](e, i); ok {
		return c.Data
	}
	return nil
}

// be16 reads a big-endian port, or 0 when b holds none.
func be16(b []byte) uint16 {
	if len(b) != 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Conntrack state bits, as in the kernel's NF_CT_STATE_*_BIT.
const (
	stateInvalid     = expr.CtStateBitINVALID
	stateEstablished = expr.CtStateBitESTABLISHED
	stateRelated     = expr.CtStateBitRELATED
	stateNew         = expr.CtStateBitNEW
)

var stateNames = map[uint32]string{
	stateInvalid:     "invalid",
	stateEstablished: "established",
	stateRelated:     "related",
	stateNew:         "new",
}

var protoNumbers = map[string]byte{
	"icmp":      unix.IPPROTO_ICMP,
	"tcp":       unix.IPPROTO_TCP,
	"udp":       unix.IPPROTO_UDP,
	"ipv6-icmp": unix.IPPROTO_ICMPV6,
}

// l4proto matches the transport protocol: "meta l4proto tcp".
type l4proto struct{ proto string }

func (s l4proto) text() string { return "meta l4proto " + s.proto }
func (s l4proto) exprs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNumbers[s.proto]}},
	}
}
func (l4proto) recognise(e []expr.Any) (stmt, bool) {
	if m, ok := at[*expr.Meta](e, 0); !ok || m.Key != expr.MetaKeyL4PROTO {
		return nil, false
	}
	b := cmpData(e, 1)
	for name, n := range protoNumbers {
		if len(b) == 1 && b[0] == n {
			return l4proto{name}, true
		}
	}
	return nil, false
}

// dport matches a TCP or UDP destination port: "tcp dport 21". In the inet
// family nft adds the l4proto dependency itself; so do we.
type dport struct {
	proto string
	port  uint16
}

func (s dport) text() string      { return fmt.Sprintf("%s dport %d", s.proto, s.port) }
func (s dport) exprs() []expr.Any { return portExprs(s.proto, 2, s.port) }

// portExprs match a TCP or UDP port at offset in the transport header:
// 0 the source port, 2 the destination port.
func portExprs(proto string, offset uint32, port uint16) []expr.Any {
	return append(l4proto{proto}.exprs(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	)
}
func (dport) recognise(e []expr.Any) (stmt, bool) {
	p, ok := l4proto{}.recognise(e)
	if !ok {
		return nil, false
	}
	return dport{p.(l4proto).proto, be16(cmpData(e, 3))}, true
}

// ctState matches one conntrack state: "ct state established".
type ctState struct{ bit uint32 }

func (s ctState) text() string      { return "ct state " + stateNames[s.bit] }
func (s ctState) exprs() []expr.Any { return ctBit(expr.CtKeySTATE, s.bit) }
func (ctState) recognise(e []expr.Any) (stmt, bool) {
	if ct, ok := at[*expr.Ct](e, 0); !ok || ct.Key != expr.CtKeySTATE {
		return nil, false
	}
	b, ok := at[*expr.Bitwise](e, 1)
	if !ok || len(b.Mask) != 4 {
		return nil, false
	}
	return ctState{binary.NativeEndian.Uint32(b.Mask)}, true
}

// statusDstNAT is the kernel's IPS_DST_NAT: the connection was DNATed.
const statusDstNAT = 1 << 5

// ctStatusDNAT matches connections whose destination was translated:
// "ct status dnat".
type ctStatusDNAT struct{}

func (ctStatusDNAT) text() string      { return "ct status dnat" }
func (ctStatusDNAT) exprs() []expr.Any { return ctBit(expr.CtKeySTATUS, statusDstNAT) }
func (ctStatusDNAT) recognise(e []expr.Any) (stmt, bool) {
	ct, ok := at[*expr.Ct](e, 0)
	return ctStatusDNAT{}, ok && ct.Key == expr.CtKeySTATUS
}

// ctBit tests one bit of a 32-bit conntrack key, as nft does for
// "ct state X" and "ct status X": mask in host byte order, compare with 0.
func ctBit(key expr.CtKey, bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bit),
			Xor:  make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// nfproto matches the packet's address family: "meta nfproto ipv4".
type nfproto struct{ v6 bool }

func (s nfproto) text() string { return "meta nfproto " + familyOf(s.v6).name }
func (s nfproto) exprs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{familyOf(s.v6).nfproto}},
	}
}
func (nfproto) recognise(e []expr.Any) (stmt, bool) {
	if m, ok := at[*expr.Meta](e, 0); !ok || m.Key != expr.MetaKeyNFPROTO {
		return nil, false
	}
	b := cmpData(e, 1)
	return nfproto{len(b) == 1 && b[0] == unix.NFPROTO_IPV6}, len(b) == 1
}

// addrFamily is how nft names an address family in each place.
type addrFamily struct {
	name    string // meta nfproto ipv4
	payload string // ip daddr, dnat ip to
	nfproto byte
}

func familyOf(v6 bool) addrFamily {
	if v6 {
		return addrFamily{"ipv6", "ip6", unix.NFPROTO_IPV6}
	}
	return addrFamily{"ipv4", "ip", unix.NFPROTO_IPV4}
}

// daddr matches one destination address: "ip daddr 192.0.2.10" or
// "ip6 daddr 2001:db8::10". In the inet family nft adds the nfproto
// dependency itself; so do we.
type daddr struct{ addr netip.Addr }

func (s daddr) text() string { return familyOf(s.addr.Is6()).payload + " daddr " + s.addr.String() }
func (s daddr) exprs() []expr.Any {
	v6 := s.addr.Is6()
	return append(nfproto{v6}.exprs(), addrPayload(v6, dst),
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: s.addr.AsSlice()},
	)
}
func (daddr) recognise(e []expr.Any) (stmt, bool) {
	if _, ok := (nfproto{}).recognise(e); !ok {
		return nil, false
	}
	a, ok := netip.AddrFromSlice(cmpData(e, 3))
	return daddr{a}, ok
}

// The two addresses of an IP header.
const (
	src = false
	dst = true
)

// addrPayload loads the source (dest false, src) or destination (dest true,
// dst) address of an IPv4 or IPv6 header into register 1.
func addrPayload(v6, dest bool) *expr.Payload {
	p := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4} // struct iphdr saddr
	switch {
	case v6 && dest:
		p.Offset, p.Len = 24, 16 // struct ipv6hdr daddr
	case v6:
		p.Offset, p.Len = 8, 16 // struct ipv6hdr saddr
	case dest:
		p.Offset = 16 // struct iphdr daddr
	}
	return p
}

// rtnLocal is the kernel's RTN_LOCAL route type.
const rtnLocal = 2

// fibDaddrLocal matches packets addressed to this host: "fib daddr type
// local".
type fibDaddrLocal struct{}

func (fibDaddrLocal) text() string { return "fib daddr type local" }
func (fibDaddrLocal) exprs() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, rtnLocal)},
	}
}
func (fibDaddrLocal) recognise(e []expr.Any) (stmt, bool) {
	_, ok := at[*expr.Fib](e, 0)
	return fibDaddrLocal{}, ok
}

// dnatTo translates the destination: "dnat ip to 192.0.2.10:21" or
// "dnat ip6 to [2001:db8::10]:21".
type dnatTo struct{ to netip.AddrPort }

func (s dnatTo) text() string {
	return "dnat " + familyOf(s.to.Addr().Is6()).payload + " to " + s.to.String()
}
func (s dnatTo) exprs() []expr.Any {
	fam := uint32(familyOf(s.to.Addr().Is6()).nfproto)
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: s.to.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, s.to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}
func (dnatTo) recognise(e []expr.Any) (stmt, bool) {
	addr, ok1 := at[*expr.Immediate](e, 0)
	port, ok2 := at[*expr.Immediate](e, 1)
	if !ok1 || !ok2 {
		return nil, false
	}
	a, ok := netip.AddrFromSlice(addr.Data)
	return dnatTo{netip.AddrPortFrom(a, be16(port.Data))}, ok
}

// masquerade translates the source to the outgoing interface's address.
type masquerade struct{}

func (masquerade) text() string      { return "masquerade" }
func (masquerade) exprs() []expr.Any { return []expr.Any{&expr.Masq{}} }
func (masquerade) recognise(e []expr.Any) (stmt, bool) {
	_, ok := at[*expr.Masq](e, 0)
	return masquerade{}, ok
}

// helperNameLen is the kernel's NF_CT_HELPER_NAME_LEN: "ct helper" loads
// the name into a register of that size, zero padded.
const helperNameLen = 16

// ctHelperIs matches the kernel helper of the connection (for a RELATED
// connection: of its master): ct helper "ftp".
type ctHelperIs struct{ kernelName string }

func (s ctHelperIs) text() string { return fmt.Sprintf("ct helper %q", s.kernelName) }
func (s ctHelperIs) exprs() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyHELPER, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: padded(s.kernelName, helperNameLen)},
	}
}
func (ctHelperIs) recognise(e []expr.Any) (stmt, bool) {
	ct, ok := at[*expr.Ct](e, 0)
	return ctHelperIs{string(bytes.TrimRight(cmpData(e, 1), "\x00"))}, ok && ct.Key == expr.CtKeyHELPER
}

// padded returns name zero padded to n bytes, as nft loads fixed-size
// strings into registers.
func padded(name string, n int) []byte {
	b := make([]byte, n)
	copy(b, name)
	return b
}

// ctHelperSet assigns a ct helper object: ct helper set "ftp-helper".
type ctHelperSet struct{ object string }

func (s ctHelperSet) text() string { return fmt.Sprintf("ct helper set %q", s.object) }
func (s ctHelperSet) exprs() []expr.Any {
	return []expr.Any{&expr.Objref{Type: int(unix.NFT_OBJECT_CT_HELPER), Name: s.object}}
}
func (ctHelperSet) recognise(e []expr.Any) (stmt, bool) {
	o, ok := at[*expr.Objref](e, 0)
	if !ok {
		return nil, false
	}
	return ctHelperSet{o.Name}, true
}

// ifnameLen is IFNAMSIZ: nft compares interface names padded to it.
const ifnameLen = 16

// iifname matches the input interface by name: iifname "lo".
type iifname struct{ name string }

func (s iifname) text() string      { return fmt.Sprintf("iifname %q", s.name) }
func (s iifname) exprs() []expr.Any { return ifnameExprs(expr.MetaKeyIIFNAME, s.name) }
func (iifname) recognise(e []expr.Any) (stmt, bool) {
	m, ok := at[*expr.Meta](e, 0)
	return iifname{string(bytes.TrimRight(cmpData(e, 1), "\x00"))}, ok && m.Key == expr.MetaKeyIIFNAME
}

// oifname matches the output interface by name: oifname "eth0".
type oifname struct{ name string }

func (s oifname) text() string      { return fmt.Sprintf("oifname %q", s.name) }
func (s oifname) exprs() []expr.Any { return ifnameExprs(expr.MetaKeyOIFNAME, s.name) }
func (oifname) recognise(e []expr.Any) (stmt, bool) {
	m, ok := at[*expr.Meta](e, 0)
	return oifname{string(bytes.TrimRight(cmpData(e, 1), "\x00"))}, ok && m.Key == expr.MetaKeyOIFNAME
}

func ifnameExprs(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: padded(name, ifnameLen)},
	}
}

// icmpv6Types matches a range of ICMPv6 types: icmpv6 type 133-136.
type icmpv6Types struct{ lo, hi byte }

func (s icmpv6Types) text() string { return fmt.Sprintf("icmpv6 type %d-%d", s.lo, s.hi) }
func (s icmpv6Types) exprs() []expr.Any {
	return append(nfproto{v6: true}.exprs(), append(l4proto{"ipv6-icmp"}.exprs(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{s.lo}},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{s.hi}},
	)...)
}
func (icmpv6Types) recognise(e []expr.Any) (stmt, bool) {
	if _, ok := (nfproto{}).recognise(e); !ok {
		return nil, false
	}
	lo, hi := cmpData(e, 5), cmpData(e, 6)
	if len(lo) != 1 || len(hi) != 1 {
		return nil, false
	}
	return icmpv6Types{lo[0], hi[0]}, true
}

// counter counts packets and bytes: counter.
type counter struct{}

func (counter) text() string      { return "counter" }
func (counter) exprs() []expr.Any { return []expr.Any{&expr.Counter{}} }
func (counter) recognise(e []expr.Any) (stmt, bool) {
	_, ok := at[*expr.Counter](e, 0)
	return counter{}, ok
}

// verdict ends the rule: accept or drop.
type verdict struct{ kind expr.VerdictKind }

func (s verdict) text() string {
	if s.kind == expr.VerdictDrop {
		return "drop"
	}
	return "accept"
}
func (s verdict) exprs() []expr.Any { return []expr.Any{&expr.Verdict{Kind: s.kind}} }
func (verdict) recognise(e []expr.Any) (stmt, bool) {
	v, ok := at[*expr.Verdict](e, 0)
	if !ok {
		return nil, false
	}
	return verdict{v.Kind}, true
}

var (
	accept = verdict{expr.VerdictAccept}
	drop   = verdict{expr.VerdictDrop}
)

// dportRange matches a range of destination ports: "tcp dport 1024-65535".
type dportRange struct {
	proto string
	r     PortRange
}

func (s dportRange) text() string { return fmt.Sprintf("%s dport %s", s.proto, s.r) }
func (s dportRange) exprs() []expr.Any {
	return append(l4proto{s.proto}.exprs(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binary.BigEndian.AppendUint16(nil, s.r.Lo)},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binary.BigEndian.AppendUint16(nil, s.r.Hi)},
	)
}
func (dportRange) recognise(e []expr.Any) (stmt, bool) {
	p, ok := l4proto{}.recognise(e)
	if !ok {
		return nil, false
	}
	return dportRange{p.(l4proto).proto, PortRange{be16(cmpData(e, 3)), be16(cmpData(e, 4))}}, true
}

// saddrLoad loads the source address into register 1: "ip saddr" or "ip6
// saddr", with the nfproto dependency nft adds in the inet family.
func saddrLoad(v6 bool) []expr.Any {
	return append(nfproto{v6}.exprs(), addrPayload(v6, src))
}

// saddrIn matches sources inside a named set, "ip saddr @set", or with
// not, outside it: "ip saddr != @set".
type saddrIn struct {
	v6  bool
	set string
	not bool
}

func (s saddrIn) text() string {
	op := ""
	if s.not {
		op = "!= "
	}
	return fmt.Sprintf("%s saddr %s@%s", familyOf(s.v6).payload, op, s.set)
}
func (s saddrIn) exprs() []expr.Any {
	return append(saddrLoad(s.v6), &expr.Lookup{SourceRegister: 1, SetName: s.set, Invert: s.not})
}
func (saddrIn) recognise(e []expr.Any) (stmt, bool) {
	fam, ok1 := nfproto{}.recognise(e)
	l, ok2 := at[*expr.Lookup](e, 3)
	if !ok1 || !ok2 {
		return nil, false
	}
	return saddrIn{v6: fam.(nfproto).v6, set: l.SetName, not: l.Invert}, true
}

// v6SourcePrefix is the length to which per-source limits shorten IPv6
// addresses: a host owns a whole /64 and could rotate through it.
const v6SourcePrefix = 64

// sourceKey is the key of the per-source sets: "ip saddr", or "ip6 saddr &
// ffff:ffff:ffff:ffff::" (the /64).
func sourceKey(v6 bool) (text string, exprs []expr.Any) {
	if !v6 {
		return "ip saddr", saddrLoad(false)
	}
	var mask [16]byte
	for i := range v6SourcePrefix / 8 {
		mask[i] = 0xff
	}
	return "ip6 saddr & " + netip.AddrFrom16(mask).String(), append(saddrLoad(true),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask[:], Xor: make([]byte, 16)})
}

// connLimit matches when the source already has more than n connections
// tracked: "add @set { ip saddr ct count over n }".
type connLimit struct {
	v6  bool
	set string
	n   uint32
}

func (s connLimit) text() string {
	key, _ := sourceKey(s.v6)
	return fmt.Sprintf("add @%s { %s ct count over %d }", s.set, key, s.n)
}
func (s connLimit) exprs() []expr.Any {
	_, key := sourceKey(s.v6)
	return append(key, &expr.Dynset{
		SrcRegKey: 1, SetName: s.set, Operation: dynsetAdd,
		Exprs: []expr.Any{&expr.Connlimit{Count: s.n, Flags: connlimitOver}},
	})
}
func (connLimit) recognise(e []expr.Any) (stmt, bool) {
	v6, d, ok := sourceDynset(e)
	if !ok || len(d.Exprs) != 1 {
		return nil, false
	}
	c, ok := d.Exprs[0].(*expr.Connlimit)
	if !ok {
		return nil, false
	}
	return connLimit{v6: v6, set: d.SetName, n: c.Count}, true
}

// sourceDynset finds the dynset after a per-source key (sourceKey).
func sourceDynset(e []expr.Any) (v6 bool, d *expr.Dynset, ok bool) {
	fam, ok := nfproto{}.recognise(e)
	if !ok {
		return false, nil, false
	}
	v6 = fam.(nfproto).v6
	_, key := sourceKey(v6)
	d, ok = at[*expr.Dynset](e, len(key))
	return v6, d, ok
}

// connlimitOver is NFT_CONNLIMIT_F_INV: match above the count.
const connlimitOver = 1

// The dynset operations (NFT_DYNSET_OP_*).
const (
	dynsetAdd    = 0
	dynsetUpdate = 1
)

// limitBurst is nft's default burst for a packet rate.
const limitBurst = 5

// rateOver matches when the source exceeds a packet rate: "update @set {
// ip saddr limit rate over 10/second }". Each new control connection is one
// packet (its SYN).
type rateOver struct {
	v6   bool
	set  string
	rate Rate
}

func (s rateOver) text() string {
	key, _ := sourceKey(s.v6)
	return fmt.Sprintf("update @%s { %s limit rate over %s }", s.set, key, s.rate)
}
func (s rateOver) exprs() []expr.Any {
	unit := expr.LimitTimeSecond
	if s.rate.Unit == "minute" {
		unit = expr.LimitTimeMinute
	}
	_, key := sourceKey(s.v6)
	return append(key, &expr.Dynset{
		SrcRegKey: 1, SetName: s.set, Operation: dynsetUpdate,
		Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: s.rate.N, Over: true, Unit: unit, Burst: limitBurst}},
	})
}
func (rateOver) recognise(e []expr.Any) (stmt, bool) {
	v6, d, ok := sourceDynset(e)
	if !ok || len(d.Exprs) != 1 {
		return nil, false
	}
	l, ok := d.Exprs[0].(*expr.Limit)
	if !ok {
		return nil, false
	}
	r := Rate{N: l.Rate, Unit: "second"}
	if l.Unit == expr.LimitTimeMinute {
		r.Unit = "minute"
	}
	return rateOver{v6: v6, set: d.SetName, rate: r}, true
}

// rejectReset refuses a TCP connection: "reject with tcp reset".
type rejectReset struct{}

func (rejectReset) text() string { return "reject with tcp reset" }
func (rejectReset) exprs() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}
func (rejectReset) recognise(e []expr.Any) (stmt, bool) {
	_, ok := at[*expr.Reject](e, 0)
	return rejectReset{}, ok
}

// jump continues in a regular chain: "jump ftp-control".
type jump struct{ chain string }

func (s jump) text() string { return "jump " + s.chain }
func (s jump) exprs() []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: s.chain}}
}
func (jump) recognise(e []expr.Any) (stmt, bool) {
	v, ok := at[*expr.Verdict](e, 0)
	if !ok {
		return nil, false
	}
	return jump{v.Chain}, true
}

// nftraceSet marks the packet for tracing: "meta nftrace set 1". From then
// on every base chain it passes, in every table, reports it.
type nftraceSet struct{}

func (nftraceSet) text() string { return "meta nftrace set 1" }
func (nftraceSet) exprs() []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: []byte{1}},
		&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1},
	}
}
func (nftraceSet) recognise(e []expr.Any) (stmt, bool) {
	m, ok := at[*expr.Meta](e, 1)
	return nftraceSet{}, ok && m.Key == expr.MetaKeyNFTRACE
}

// logGroup copies the packet to userspace through nfnetlink_log: "log
// group 7".
type logGroup struct{ group uint16 }

func (s logGroup) text() string { return fmt.Sprintf("log group %d", s.group) }
func (s logGroup) exprs() []expr.Any {
	return []expr.Any{&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: s.group}}
}
func (logGroup) recognise(e []expr.Any) (stmt, bool) {
	l, ok := at[*expr.Log](e, 0)
	if !ok {
		return nil, false
	}
	return logGroup{l.Group}, true
}

// sport matches a TCP or UDP source port: "tcp sport 21".
type sport struct {
	proto string
	port  uint16
}

func (s sport) text() string      { return fmt.Sprintf("%s sport %d", s.proto, s.port) }
func (s sport) exprs() []expr.Any { return portExprs(s.proto, 0, s.port) }
func (sport) recognise(e []expr.Any) (stmt, bool) {
	p, ok := l4proto{}.recognise(e)
	if !ok {
		return nil, false
	}
	return sport{p.(l4proto).proto, be16(cmpData(e, 3))}, true
}

// tcpSYN matches the packets of TCP that carry SYN (a connection's first
// packet, and its answer): "tcp flags & syn == syn".
type tcpSYN struct{}

func (tcpSYN) text() string { return "tcp flags & syn == syn" }
func (tcpSYN) exprs() []expr.Any {
	return append(l4proto{"tcp"}.exprs(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
	)
}
func (tcpSYN) recognise(e []expr.Any) (stmt, bool) {
	p, ok := at[*expr.Payload](e, 2)
	return tcpSYN{}, ok && p.Offset == 13
}
