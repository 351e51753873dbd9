package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// A static reading of another firewall's chains: does a packet of one kind
// (a probe) reach the end of a chain, get accepted, or get dropped, and is
// that certain? It understands what firewall managers write for the
// traffic that matters here (conntrack state, protocol and destination
// port, the loopback interface, the ct helper, iptables-nft's xt conntrack
// and tcp matches, jumps) and takes anything else (addresses, sets, rates)
// as "may or may not match".

// probe is a kind of packet that FTP depends on.
type probe struct {
	v6     bool
	state  uint32 // one ct state bit
	proto  byte   // unix.IPPROTO_TCP
	dport  uint16 // a control port; 0 for a data connection, whose port is in ports
	ports  PortRange
	helper string // the ct helper of the connection (or of its master), "" if none
	// daddrType is the route type of the destination address (fib daddr
	// type): RTN_LOCAL for a packet to this host, RTN_UNICAST for one
	// forwarded; 0 when not known.
	daddrType uint32
	// status is the connection's ct status bits, when known (no NAT:
	// IPS_EXPECTED for a related connection, nothing for a new one).
	status      uint32
	statusKnown bool
	what        string // for people: "new control connections to port 21"
}

// tri is a three-valued truth: a static reading cannot always tell.
type tri int8

const (
	no tri = iota
	maybe
	yes
)

func and(a, b tri) tri { return min(a, b) }

// outcome is what a chain does with a probe.
type outcome struct {
	verdict string // "accept", "drop", "" (went on: returned or fell through)
	rule    *nftables.Rule
	certain bool // no rule before the verdict might have decided otherwise
	// A rule that might drop the probe, met before an accept that was
	// certain only if that rule did not match.
	maybeDrop *nftables.Rule
}

// ruleSource is what evaluate reads of another table.
type ruleSource interface {
	rules(c *nftables.Chain) ([]*nftables.Rule, error)
	chain(table *nftables.Table, name string) *nftables.Chain
	// set returns a set of the table, nil if unreadable.
	set(table *nftables.Table, name string) *setContent
}

// evaluate walks chain with p, following jumps (to depth 16, as a loop
// guard), and returns what happens. certain carries in whether everything
// before chain was certain.
func evaluate(src ruleSource, chain *nftables.Chain, p probe, certain bool, depth int) (outcome, error) {
	rules, err := src.rules(chain)
	if err != nil {
		return outcome{}, err
	}
	var maybeDrop *nftables.Rule
	for _, r := range rules {
		m, v := matchRule(r.Exprs, p, func(name string) *setContent { return src.set(chain.Table, name) })
		if m == no || v.kind == "" {
			continue
		}
		switch v.kind {
		case "accept", "drop":
			if m == maybe {
				if v.kind == "accept" {
					certain = false
				} else if maybeDrop == nil {
					maybeDrop = r
				}
				continue
			}
			return outcome{verdict: v.kind, rule: r, certain: certain, maybeDrop: maybeDrop}, nil
		case "jump", "goto":
			target := src.chain(chain.Table, v.chain)
			if target == nil || depth > 16 {
				certain = false
				continue
			}
			sub, err := evaluate(src, target, p, certain && m == yes, depth+1)
			if err != nil {
				return outcome{}, err
			}
			if maybeDrop == nil {
				maybeDrop = sub.maybeDrop
			}
			if sub.verdict != "" {
				if m == yes {
					sub.maybeDrop = maybeDrop
					return sub, nil
				}
				if sub.verdict == "accept" {
					certain = false
				} else if maybeDrop == nil {
					maybeDrop = sub.rule
				}
				continue
			}
			certain = certain && sub.certain
			if v.kind == "goto" && m == yes {
				return policyOf(chain, depth, certain, maybeDrop), nil
			}
		case "return":
			if m == yes {
				return policyOf(chain, depth, certain, maybeDrop), nil
			}
			certain = false
		}
	}
	return policyOf(chain, depth, certain, maybeDrop), nil
}

// policyOf ends a walk through chain: in a base chain (depth 0) with its
// policy, which also ends a return or a chain gone to by goto; in a chain
// jumped to, by going on in the caller.
func policyOf(chain *nftables.Chain, depth int, certain bool, maybeDrop *nftables.Rule) outcome {
	if depth == 0 && chain.Hooknum != nil && chain.Policy != nil {
		if *chain.Policy == nftables.ChainPolicyDrop {
			return outcome{verdict: "drop", certain: certain, maybeDrop: maybeDrop}
		}
		return outcome{verdict: "accept", certain: certain, maybeDrop: maybeDrop}
	}
	return outcome{certain: certain, maybeDrop: maybeDrop}
}

// verdictOf is what a rule does when it matches.
type verdictOf struct {
	kind  string // "accept", "drop" (reject too), "jump", "goto", "return", "" (none)
	chain string
}

// reg is a register's content: known bytes, or not known (nil with
// unknown), or an interface name that is not "lo", or a port somewhere in
// a range, or a value known only not to be zero.
type reg struct {
	data    []byte
	unknown bool
	notLo   bool
	ports   PortRange
	nonZero bool
}

// matchRule says whether the rule's matches hold for p, and its verdict.
// set returns the elements of a set the rule looks up (nil: unknown).
func matchRule(exprs []expr.Any, p probe, set func(name string) *setContent) (tri, verdictOf) {
	regs := map[uint32]reg{}
	m := yes
	var v verdictOf
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				continue // meta set: a statement
			}
			regs[e.Register] = p.meta(e.Key)
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				continue
			}
			regs[e.DestRegister] = p.payload(e)
		case *expr.Ct:
			if e.SourceRegister {
				continue // ct set: a statement
			}
			regs[e.Register] = p.ct(e.Key)
		case *expr.Bitwise:
			src := regs[e.SourceRegister]
			out := reg{unknown: true}
			if !src.unknown && src.data != nil && len(src.data) == len(e.Mask) && len(e.Xor) == len(e.Mask) {
				d := make([]byte, len(src.data))
				for i := range d {
					d[i] = src.data[i]&e.Mask[i] ^ e.Xor[i]
				}
				out = reg{data: d}
			}
			regs[e.DestRegister] = out
		case *expr.Cmp:
			m = and(m, compare(regs[e.Register], e.Op, e.Data))
		case *expr.Range:
			m = and(m, maybe)
		case *expr.Lookup:
			if e.IsDestRegSet {
				m = and(m, maybe) // a map: its values decide
				continue
			}
			// A set's elements are read only when the register can
			// decide: a probe's addresses are unknown, and a blocklist's
			// million elements would be read to answer maybe.
			r := regs[e.SourceRegister]
			var content *setContent
			if set != nil && r.decides() {
				content = set(e.SetName)
			}
			in := member(r, content)
			if e.Invert {
				in = yes + no - in
			}
			m = and(m, in)
		case *expr.Match:
			m = and(m, p.xtMatch(e))
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				v = verdictOf{kind: "accept"}
			case expr.VerdictDrop:
				v = verdictOf{kind: "drop"}
			case expr.VerdictJump:
				v = verdictOf{kind: "jump", chain: e.Chain}
			case expr.VerdictGoto:
				v = verdictOf{kind: "goto", chain: e.Chain}
			case expr.VerdictReturn:
				v = verdictOf{kind: "return"}
			}
		case *expr.Reject:
			v = verdictOf{kind: "drop"}
		case *expr.Target:
			switch e.Name {
			case "REJECT":
				v = verdictOf{kind: "drop"}
			case "LOG", "NFLOG", "CT", "MARK", "CONNMARK", "TCPMSS", "NOTRACK", "CHECKSUM":
			default:
				m = and(m, maybe) // a target that may end the chain
			}
		case *expr.Counter, *expr.Log, *expr.Immediate, *expr.Objref, *expr.Notrack, *expr.Masq, *expr.NAT, *expr.Redir:
		case *expr.Fib:
			out := reg{unknown: true}
			switch {
			case e.ResultADDRTYPE && e.FlagDADDR && !e.FlagSADDR && p.daddrType != 0:
				out = reg{data: binary.NativeEndian.AppendUint32(nil, p.daddrType)}
			case (e.ResultOIF || e.ResultOIFNAME) && e.FlagSADDR:
				// A reverse path check (rpfilter): genuine FTP traffic has
				// a route back to its source.
				out = reg{nonZero: true}
			}
			regs[e.Register] = out
		case *expr.Limit, *expr.Quota, *expr.Connlimit, *expr.Dynset, *expr.Exthdr, *expr.Socket, *expr.Rt, *expr.Numgen, *expr.Hash:
			m = and(m, maybe)
		default:
			m = and(m, maybe)
		}
		if m == no {
			return no, v
		}
	}
	return m, v
}

// compare evaluates a comparison of r with data.
func compare(r reg, op expr.CmpOp, data []byte) tri {
	if r.notLo {
		lo := bytes.Equal(bytes.TrimRight(data, "\x00"), []byte("lo"))
		switch {
		case op == expr.CmpOpEq && lo:
			return no
		case op == expr.CmpOpNeq && lo:
			return yes
		}
		return maybe
	}
	if !r.ports.IsZero() && len(data) == 2 {
		// A port somewhere in a range: true for all of it, none of it, or
		// some.
		lo := compare(reg{data: binary.BigEndian.AppendUint16(nil, r.ports.Lo)}, op, data)
		hi := compare(reg{data: binary.BigEndian.AppendUint16(nil, r.ports.Hi)}, op, data)
		v := be16(data)
		inside := r.ports.Lo < v && v < r.ports.Hi
		switch {
		case lo == yes && hi == yes && !(op == expr.CmpOpNeq && inside):
			return yes
		case lo == no && hi == no && !(op == expr.CmpOpEq && inside):
			return no
		}
		return maybe
	}
	if r.nonZero {
		zero := !slices.ContainsFunc(data, func(b byte) bool { return b != 0 })
		switch {
		case zero && op == expr.CmpOpEq:
			return no
		case zero && op == expr.CmpOpNeq:
			return yes
		}
		return maybe
	}
	if r.unknown || r.data == nil || len(r.data) != len(data) {
		return maybe
	}
	c := bytes.Compare(r.data, data)
	var ok bool
	switch op {
	case expr.CmpOpEq:
		ok = c == 0
	case expr.CmpOpNeq:
		ok = c != 0
	case expr.CmpOpLt:
		ok = c < 0
	case expr.CmpOpLte:
		ok = c <= 0
	case expr.CmpOpGt:
		ok = c > 0
	case expr.CmpOpGte:
		ok = c >= 0
	default:
		return maybe
	}
	if ok {
		return yes
	}
	return no
}

func (p probe) meta(key expr.MetaKey) reg {
	switch key {
	case expr.MetaKeyL4PROTO:
		return reg{data: []byte{p.proto}}
	case expr.MetaKeyNFPROTO:
		if p.v6 {
			return reg{data: []byte{unix.NFPROTO_IPV6}}
		}
		return reg{data: []byte{unix.NFPROTO_IPV4}}
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
		return reg{notLo: true} // FTP to this host comes from elsewhere
	}
	return reg{unknown: true}
}

func (p probe) payload(e *expr.Payload) reg {
	if e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2 {
		if p.dport != 0 {
			return reg{data: binary.BigEndian.AppendUint16(nil, p.dport)}
		}
		if !p.ports.IsZero() {
			return reg{ports: p.ports}
		}
	}
	return reg{unknown: true}
}

func (p probe) ct(key expr.CtKey) reg {
	switch key {
	case expr.CtKeySTATE:
		return reg{data: binary.NativeEndian.AppendUint32(nil, p.state)}
	case expr.CtKeySTATUS:
		if p.statusKnown {
			return reg{data: binary.NativeEndian.AppendUint32(nil, p.status)}
		}
	case expr.CtKeyHELPER:
		if p.helper == "" {
			return reg{unknown: true} // assignment may come after this chain
		}
		return reg{data: padded(p.helper, helperNameLen)}
	}
	return reg{unknown: true}
}

// xtStateBit is iptables' XT_CONNTRACK_STATE_BIT for a ct state bit:
// invalid 1, established 2, related 4, new 8.
func xtStateBit(state uint32) uint16 {
	switch state {
	case stateInvalid:
		return 1
	case stateEstablished:
		return 2
	case stateRelated:
		return 4
	case stateNew:
		return 8
	}
	return 0
}

// xtMatch evaluates the iptables matches that iptables-nft leaves as xt
// expressions: conntrack/state and tcp.
func (p probe) xtMatch(e *expr.Match) tri {
	switch info := e.Info.(type) {
	case *xt.ConntrackMtinfo1:
		return p.ctStateMatch(info.ConntrackMtinfoBase, uint16(info.StateMask))
	case *xt.ConntrackMtinfo2:
		return p.ctStateMatch(info.ConntrackMtinfoBase, info.StateMask)
	case *xt.ConntrackMtinfo3:
		return p.ctStateMatch(info.ConntrackMtinfoBase, info.StateMask)
	case *xt.AddrType:
		return p.addrTypeMatch(info.Source, info.Dest, info.InvertDest)
	case *xt.AddrTypeV1:
		// XT_ADDRTYPE_INVERT_DEST is 0x2; the flags that limit the match
		// to an interface (0x4, 0x8) do not change the route type.
		return p.addrTypeMatch(info.Source, info.Dest, info.Flags&0x2 != 0)
	case *xt.Tcp:
		if p.proto != unix.IPPROTO_TCP {
			return no
		}
		if info.SrcPorts != [2]uint16{0, 0xffff} || info.FlagsMask != 0 || info.Option != 0 {
			return maybe
		}
		lo, hi := p.dport, p.dport
		if p.dport == 0 {
			lo, hi = p.ports.Lo, p.ports.Hi
		}
		if lo < info.DstPorts[0] && hi >= info.DstPorts[0] || lo <= info.DstPorts[1] && hi > info.DstPorts[1] {
			return maybe // partly inside
		}
		in := info.DstPorts[0] <= lo && hi <= info.DstPorts[1]
		if info.InvFlags&xt.TcpInvDestPorts != 0 {
			in = !in
		}
		if in {
			return yes
		}
		return no
	}
	switch e.Name {
	case "comment":
		return yes
	case "rt":
		return no // an IPv6 routing header, which FTP's packets do not carry
	case "helper":
		// struct xt_helper_info: int invert; char name[30].
		if b, ok := e.Info.(*xt.Unknown); ok && len(*b) >= 5 && p.helper != "" {
			invert := binary.NativeEndian.Uint32((*b)[:4]) != 0
			name := string(bytes.TrimRight((*b)[4:min(len(*b), 34)], "\x00"))
			if (name == p.helper) != invert {
				return yes
			}
			return no
		}
	}
	return maybe
}

// addrTypeMatch evaluates iptables' addrtype match (what nft shows as "fib
// daddr type"): dest is a mask of route types, bit n for RTN type n.
func (p probe) addrTypeMatch(source, dest uint16, invert bool) tri {
	if source != 0 || p.daddrType == 0 {
		return maybe
	}
	if dest == 0 {
		return yes
	}
	in := dest&(1<<p.daddrType) != 0
	if in != invert {
		return yes
	}
	return no
}

func (p probe) ctStateMatch(b xt.ConntrackMtinfoBase, mask uint16) tri {
	if b.MatchFlags&^uint16(xt.ConntrackState|xt.ConntrackStateAlias) != 0 {
		return maybe // also matches on status, addresses, ports...
	}
	in := mask&xtStateBit(p.state) != 0
	if b.InvertFlags&uint16(xt.ConntrackState) != 0 {
		in = !in
	}
	if in {
		return yes
	}
	return no
}

// describeRule names a rule for people: its handle and comment.
func describeRule(r *nftables.Rule) string {
	if r == nil {
		return "policy drop"
	}
	s := fmt.Sprintf("rule handle %d", r.Handle)
	if r.Chain != nil && r.Chain.Name != "" {
		s += " in chain " + r.Chain.Name
	}
	if c := commentOf(r.UserData); c != "" {
		s += fmt.Sprintf(" (comment %q)", c)
	}
	return s
}

// setContent is a set's elements, and whether they are intervals.
type setContent struct {
	elements []nftables.SetElement
	interval bool
}

// member says whether r is an element of a set (nil: unknown), exact or,
// in an interval set, within a range (a start element, then the end
// element after the range).
func member(r reg, set *setContent) tri {
	if set == nil || !r.decides() {
		return maybe
	}
	type span struct{ lo, hi []byte } // hi exclusive; nil: open, or for an exact element: lo only
	var spans []span
	if set.interval {
		sorted := slices.Clone(set.elements)
		slices.SortFunc(sorted, func(a, b nftables.SetElement) int {
			if c := bytes.Compare(a.Key, b.Key); c != 0 {
				return c
			}
			// At one key the end of a range comes before the next start.
			switch {
			case a.IntervalEnd == b.IntervalEnd:
				return 0
			case a.IntervalEnd:
				return -1
			}
			return 1
		})
		for i, e := range sorted {
			if e.IntervalEnd {
				continue
			}
			var hi []byte
			if i+1 < len(sorted) && sorted[i+1].IntervalEnd {
				hi = sorted[i+1].Key
			}
			spans = append(spans, span{e.Key, hi})
		}
	}
	within := func(v []byte) tri {
		if !set.interval {
			for _, e := range set.elements {
				if len(e.Key) != len(v) {
					return maybe
				}
				if bytes.Equal(e.Key, v) {
					return yes
				}
			}
			return no
		}
		for _, sp := range spans {
			if len(sp.lo) != len(v) {
				return maybe
			}
			if bytes.Compare(sp.lo, v) <= 0 && (sp.hi == nil || bytes.Compare(v, sp.hi) < 0) {
				return yes
			}
		}
		return no
	}
	switch {
	case !r.ports.IsZero():
		// A port somewhere in a range: in the set for all, none or some.
		lo := within(binary.BigEndian.AppendUint16(nil, r.ports.Lo))
		hi := within(binary.BigEndian.AppendUint16(nil, r.ports.Hi))
		if lo == no && hi == no {
			// None of the set's elements may lie strictly inside.
			for _, e := range set.elements {
				if len(e.Key) == 2 && !e.IntervalEnd {
					if v := binary.BigEndian.Uint16(e.Key); r.ports.Lo < v && v < r.ports.Hi {
						return maybe
					}
				}
			}
			return no
		}
		if lo == yes && hi == yes && set.interval {
			// Both ends in; all between too if one range holds both.
			for _, sp := range spans {
				if len(sp.lo) == 2 && binary.BigEndian.Uint16(sp.lo) <= r.ports.Lo && (sp.hi == nil || r.ports.Hi < binary.BigEndian.Uint16(sp.hi)) {
					return yes
				}
			}
		}
		return maybe
	}
	return within(r.data)
}

// decides says whether r is known well enough for a set lookup to answer
// yes or no: a range of ports, or a value.
func (r reg) decides() bool {
	return !r.ports.IsZero() || !(r.unknown || r.data == nil || r.notLo || r.nonZero)
}
