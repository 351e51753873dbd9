package nft

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Status is ftpnft's table as the kernel holds it.
type Status struct {
	// Table is the table's name; the family is always inet.
	Table string `json:"table"`
	// Installed reports whether the table exists.
	Installed bool `json:"installed"`
	// Owned reports whether ftpnft created it. A table that is installed
	// but not owned is someone else's, and ftpnft leaves it alone.
	Owned bool `json:"owned"`
	// Matches reports whether the table holds exactly the ruleset that
	// install would create from the configuration given to ReadStatus.
	Matches bool `json:"matches"`
	// Modified reports that the table no longer holds what ftpnft put in
	// it: it was changed by hand (nft flush table, a rule added) or by
	// another program. Install repairs it.
	Modified bool `json:"modified"`
	// Differences say how the table differs from the configuration given
	// to ReadStatus, at most 20 of them; empty when it matches.
	Differences []string `json:"differences"`
	// Helpers are the table's ct helper objects.
	Helpers []Helper `json:"helpers"`
	// Roles are the roles the table's chains serve: server (input admits
	// control connections), client (output assigns the helper), router
	// (forward chain).
	Roles []Role `json:"roles"`
	// Ports are the control ports whose NEW connections get a helper.
	Ports []uint16 `json:"ports"`
	// Policy is the policy of the input and forward chains.
	Policy Policy `json:"policy,omitempty"`
	// DNAT are the port forwards to inner FTP servers.
	DNAT []DNAT `json:"dnat"`
	// Masquerade are the interfaces traffic is masqueraded behind.
	Masquerade []string `json:"masquerade"`
	// RelatedPorts are the ports expected data connections may go to.
	RelatedPorts PortRange `json:"related_ports"`
	// PassivePorts is the passive range opened for FTPS; zero if none.
	PassivePorts PortRange `json:"passive_ports"`
	// Sources are the networks allowed to open control connections, as
	// merged ranges; empty when any source may.
	Sources []AddrRange `json:"sources"`
	// MaxConnPerSource is the limit of concurrent control connections per
	// source address; 0 if none.
	MaxConnPerSource uint32 `json:"max_conn_per_source"`
	// ConnRate is the limit of new control connections per source address;
	// zero if none.
	ConnRate Rate `json:"conn_rate"`
	// Counters are the packet counters of ftpnft's rules, in chain order.
	Counters []Counter `json:"counters"`
}

// Counter is one rule's counter.
type Counter struct {
	Chain   string `json:"chain"`
	Rule    string `json:"rule"` // the rule's comment, without "ftpnft: "
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ReadStatus reads ftpnft's table back from the kernel and compares it with
// want, the ruleset install would create. It sends no changes.
func ReadStatus(ctx context.Context, want *Ruleset, opts ...Option) (*Status, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	cur, err := read(c, want.Table, false)
	if err != nil {
		return nil, err
	}
	st := &Status{Table: want.Table, Differences: []string{}, Helpers: []Helper{}, Roles: []Role{}, Ports: []uint16{},
		DNAT: []DNAT{}, Masquerade: []string{}, Sources: []AddrRange{}, Counters: []Counter{}}
	if cur == nil {
		return st, nil
	}
	st.Installed = true
	st.Owned = cur.Owned
	if !cur.Owned {
		return st, nil // someone else's table: nothing of it is ftpnft's to report
	}
	st.Matches = cur.fingerprint == want.fingerprint()
	st.Modified = cur.modified()
	if !st.Matches {
		st.Differences = differences(cur, want)
	}
	st.Helpers = append(st.Helpers, cur.Helpers...)
	for _, set := range cur.Sets {
		if set.Interval && strings.HasPrefix(set.Name, setSources) {
			st.Sources = append(st.Sources, set.Ranges...)
		}
	}
	roles := map[Role]bool{}
	for _, ch := range cur.Chains {
		if ch.Hook == "input" || ch.Hook == "forward" {
			st.Policy = ch.Policy
		}
		roles[RoleRouter] = roles[RoleRouter] || ch.Hook == "forward"
		for i, r := range ch.rules {
			sh := shapeOf(r)
			switch {
			case sh.assigns && sh.dport != 0 && !sh.daddr.IsValid():
				if !slices.Contains(st.Ports, sh.dport) {
					st.Ports = append(st.Ports, sh.dport)
				}
				roles[RoleClient] = roles[RoleClient] || ch.Hook == "output"
			case ch.Hook == "input" && sh.ctNew && sh.accept && sh.dport != 0:
				roles[RoleServer] = true
			case sh.dnat.IsValid():
				st.DNAT = append(st.DNAT, DNAT{ListenPort: sh.dport, To: sh.dnat})
			case sh.masquerade:
				st.Masquerade = append(st.Masquerade, sh.oifname)
			case sh.ctRelated && sh.ctHelper:
				st.RelatedPorts = sh.dportRange
				if st.RelatedPorts.IsZero() { // a table from before ftpnft narrowed it
					st.RelatedPorts = PortRange{1, 65535}
				}
			case ch.Hook == "input" && sh.ctNew && sh.accept && sh.dportRange != PortRange{}:
				st.PassivePorts = sh.dportRange
			case sh.connlimit > 0:
				st.MaxConnPerSource = sh.connlimit
			case !sh.rate.IsZero():
				st.ConnRate = sh.rate
			}
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					st.Counters = append(st.Counters, Counter{
						Chain:   ch.Name,
						Rule:    ch.Rules[i].Comment,
						Packets: cnt.Packets,
						Bytes:   cnt.Bytes,
					})
				}
			}
		}
	}
	for _, r := range Roles() {
		if roles[r] {
			st.Roles = append(st.Roles, r)
		}
	}
	return st, nil
}

// shape is what status needs to know of a rule read back from the kernel:
// the matches and actions of the statements ftpnft writes, decoded from
// their expressions.
type shape struct {
	dport      uint16     // tcp/udp dport match
	daddr      netip.Addr // ip/ip6 daddr match
	oifname    string     // oifname match
	ctNew      bool       // ct state new
	ctRelated  bool       // ct state related
	ctHelper   bool       // ct helper "NAME" (a match, not an assignment)
	dportRange PortRange  // tcp/udp dport LO-HI
	connlimit  uint32     // add @set { ... ct count over N }
	rate       Rate       // update @set { ... limit rate over N/unit }
	assigns    bool       // ct helper set
	accept     bool       // verdict accept, or jump to the control checks
	dnat       netip.AddrPort
	masquerade bool
}

// shapeOf sums up the statements of r, as recognised by each statement type
// (stmt.go). A rule with expressions that are none of ftpnft's statements
// sums up what could be recognised before them.
func shapeOf(r *nftables.Rule) shape {
	var sh shape
	stmts, _ := decodeStmts(r.Exprs)
	for _, s := range stmts {
		switch s := s.(type) {
		case dport:
			sh.dport = s.port
		case daddr:
			sh.daddr = s.addr
		case oifname:
			sh.oifname = s.name
		case ctState:
			sh.ctNew = sh.ctNew || s.bit == stateNew
			sh.ctRelated = sh.ctRelated || s.bit == stateRelated
		case ctHelperIs:
			sh.ctHelper = true
		case dportRange:
			sh.dportRange = s.r
		case connLimit:
			sh.connlimit = s.n
		case rateOver:
			sh.rate = s.rate
		case ctHelperSet:
			sh.assigns = true
		case verdict:
			sh.accept = s.kind == expr.VerdictAccept
		case jump:
			sh.accept = s.chain == controlChain // the control checks end in accept
		case dnatTo:
			sh.dnat = s.to
		case masquerade:
			sh.masquerade = true
		}
	}
	return sh
}
