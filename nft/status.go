package nft

import (
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
	// Helpers are the table's ct helper objects.
	Helpers []Helper `json:"helpers"`
	// Ports are the control ports whose NEW connections get a helper.
	Ports []uint16 `json:"ports"`
	// Policy is the input chain's policy.
	Policy Policy `json:"policy,omitempty"`
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
func ReadStatus(want *Ruleset, opts ...Option) (*Status, error) {
	c, release, err := connect(opts)
	if err != nil {
		return nil, err
	}
	defer release()
	cur, err := read(c, want.Table)
	if err != nil {
		return nil, err
	}
	st := &Status{Table: want.Table, Helpers: []Helper{}, Ports: []uint16{}, Counters: []Counter{}}
	if cur == nil {
		return st, nil
	}
	st.Installed = true
	st.Owned = cur.Owned
	st.Matches = cur.fingerprint == want.fingerprint()
	st.Helpers = append(st.Helpers, cur.Helpers...)
	for _, ch := range cur.Chains {
		if ch.Hook == "prerouting" {
			st.Ports = append(st.Ports, controlPorts(ch.rules)...)
		}
		if ch.Hook == "input" {
			st.Policy = ch.Policy
		}
		for i, r := range ch.rules {
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
	return st, nil
}
