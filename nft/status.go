package nft

import (
	"context"
	"fmt"
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
	// Allow are the extra services the input chain admits.
	Allow []Service `json:"allow"`
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
	// Blocked are the networks whose packets are dropped first, as merged
	// ranges.
	Blocked []AddrRange `json:"blocked"`
	// Bans is how many bans the table holds (ftpnft ban; ReadBans lists
	// them).
	Bans int `json:"bans"`
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
	return readStatus(ctx, want.Table, want, opts)
}

// ReadInstalled reads ftpnft's table back from the kernel without a
// configuration to compare it with: it reports what is installed, and
// Matches says whether the table is as ftpnft made it: its stamp proves it
// unchanged since ftpnft's last batch, or, without a stamp that holds, it
// holds exactly what its own configuration ([Status.Config]) builds. It
// sends no changes.
func ReadInstalled(ctx context.Context, table string, opts ...Option) (*Status, error) {
	return readStatus(ctx, table, nil, opts)
}

func readStatus(ctx context.Context, table string, want *Ruleset, opts []Option) (*Status, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	// The address sets' elements are taken from want, or from what the
	// state directory recorded, when the table's stamp proves them.
	gen, err := c.generation()
	if err != nil {
		return nil, err
	}
	cur, err := read(c, table, false, gen, c.candidates(table, want)...)
	if err != nil {
		return nil, err
	}
	// A commit during the read may have changed what the stamp proved:
	// then every element is read.
	if now, err := c.generation(); err != nil {
		return nil, err
	} else if now != gen && cur != nil && cur.proven {
		if cur, err = read(c, table, false, now); err != nil {
			return nil, err
		}
	}
	st := &Status{Table: table, Differences: []string{}, Helpers: []Helper{}, Roles: []Role{}, Ports: []uint16{},
		Allow: []Service{}, DNAT: []DNAT{}, Masquerade: []string{}, Sources: []AddrRange{}, Blocked: []AddrRange{}, Counters: []Counter{}}
	if cur == nil {
		return st, nil
	}
	st.Installed = true
	st.Owned = cur.Owned
	if !cur.Owned {
		return st, nil // someone else's table: nothing of it is ftpnft's to report
	}
	st.Modified = cur.modified()
	fillStatus(st, cur)
	for _, s := range cur.Sets {
		if s.Runtime && strings.HasPrefix(s.Name, setBan) {
			els, err := c.setElements(table, s.Name)
			if err != nil {
				return nil, &Error{Op: "list set elements", Table: table, Err: classify(err)}
			}
			st.Bans += len(bansOf(els))
		}
	}
	if want == nil && cur.hasStamp && !st.Modified {
		// As ftpnft left it: it holds what ftpnft built.
		st.Matches = true
		return st, nil
	}
	if want == nil {
		// Compared with what its own configuration builds; when its rules
		// are too few to tell one (a flushed table), with the default.
		var err error
		if want, err = Build(st.Config()); err != nil {
			cfg := DefaultConfig()
			cfg.Table = table
			if want, err = Build(cfg); err != nil {
				return nil, err
			}
		}
	}
	st.Matches = cur.fingerprint == want.fingerprint()
	if !st.Matches {
		st.Differences = differences(cur, want)
	}
	return st, nil
}

// fillStatus fills st with what the table's helpers, sets and rules say.
func fillStatus(st *Status, cur *installed) {
	st.Helpers = append(st.Helpers, cur.Helpers...)
	st.Sources = joinRanges(st.Sources, cur.Sets, setSources)
	st.Blocked = joinRanges(st.Blocked, cur.Sets, setBlock)
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
			case ch.Hook == "input" && sh.accept && strings.HasPrefix(ch.Rules[i].Comment, "allow "):
				if svc, err := ParseService(strings.TrimPrefix(ch.Rules[i].Comment, "allow ")); err == nil {
					st.Allow = append(st.Allow, svc)
				}
			case sh.connlimit > 0:
				st.MaxConnPerSource = sh.connlimit
			case !sh.rate.IsZero():
				st.ConnRate = sh.rate
			}
		}
		st.Counters = append(st.Counters, countersOf(ch.Name, ch.rules)...)
	}
	for _, r := range Roles() {
		if roles[r] {
			st.Roles = append(st.Roles, r)
		}
	}
}

// joinRanges returns the ranges of the interval sets whose names start
// with base, IPv4 then IPv6, or empty when there are none. A list that is
// alone is taken as it is: copying a million ranges costs more than the
// rest of a status.
func joinRanges(empty []AddrRange, sets []Set, base string) []AddrRange {
	var lists [][]AddrRange
	for _, set := range sets {
		if set.Interval && strings.HasPrefix(set.Name, base) && len(set.Ranges) > 0 {
			lists = append(lists, set.Ranges)
		}
	}
	switch len(lists) {
	case 0:
		return empty
	case 1:
		return lists[0]
	}
	return slices.Concat(lists...)
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

// Config returns the configuration the table was built from, as far as
// its rules tell: every key that ftpnft's config files have, but the
// namespace. Sources are given as the merged ranges the sets hold, each as
// the prefixes that cover it.
func (st *Status) Config() Config {
	c := Config{Table: st.Table, Ports: st.Ports, Roles: st.Roles, Policy: st.Policy, Allow: st.Allow,
		DNAT: st.DNAT, Masquerade: st.Masquerade, RelatedPorts: st.RelatedPorts, PassivePorts: st.PassivePorts,
		MaxConnPerSource: st.MaxConnPerSource, ConnRate: st.ConnRate}
	for _, r := range st.Sources {
		c.Sources = append(c.Sources, r.prefixes()...)
	}
	for _, r := range st.Blocked {
		c.Block = append(c.Block, r.prefixes()...)
	}
	return c
}

// A KeyDifference is one key of the configuration whose installed value
// differs from the wanted one; the values are written as the config file
// and the flags write them.
type KeyDifference struct {
	Key       string `json:"key"` // the config file's key, e.g. "policy"
	Installed string `json:"installed"`
	Wanted    string `json:"wanted"`
}

// String formats d as "policy: installed accept, wanted drop".
func (d KeyDifference) String() string {
	return fmt.Sprintf("%s: installed %s, wanted %s", d.Key, orNone(d.Installed), orNone(d.Wanted))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Compare lists the keys whose values differ between the installed
// configuration and the wanted one, in the order of the config file's keys.
// Lists are compared as sets (their order does not matter to the kernel's
// verdicts, but for the order of rules) and sources and blocklists as
// merged ranges, whole; a difference shows the first four ranges.
func Compare(installed, wanted Config) []KeyDifference {
	var out []KeyDifference
	add := func(key, a, b string) {
		if a != b {
			out = append(out, KeyDifference{key, a, b})
		}
	}
	add("role", sortedText(installed.Roles), sortedText(wanted.Roles))
	add("ports", sortedText(installed.Ports), sortedText(wanted.Ports))
	add("policy", string(installed.Policy), string(wanted.Policy))
	add("allow", sortedText(installed.Allow), sortedText(wanted.Allow))
	add("dnat", sortedText(installed.DNAT), sortedText(wanted.DNAT))
	add("masquerade", sortedText(installed.Masquerade), sortedText(wanted.Masquerade))
	add("related-ports", installed.RelatedPorts.text(), wanted.RelatedPorts.text())
	add("passive-ports", installed.PassivePorts.text(), wanted.PassivePorts.text())
	for _, r := range []struct {
		key         string
		have, wants []netip.Prefix
	}{{"source", installed.Sources, wanted.Sources}, {"block", installed.Block, wanted.Block}} {
		// Compared whole, shown in part: a list may hold a million.
		have, wants := mergedRanges(r.have), mergedRanges(r.wants)
		if !slices.Equal(have, wants) {
			out = append(out, KeyDifference{r.key, abbreviated(have, 4), abbreviated(wants, 4)})
		}
	}
	add("max-conn-per-source", fmt.Sprint(installed.MaxConnPerSource), fmt.Sprint(wanted.MaxConnPerSource))
	add("conn-rate", installed.ConnRate.text(), wanted.ConnRate.text())
	return out
}

// sortedText lists values as text, sorted and comma separated.
func sortedText[T any](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = fmt.Sprint(v)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// mergedRanges returns the merged ranges of prefixes, IPv4 then IPv6.
func mergedRanges(prefixes []netip.Prefix) []AddrRange {
	return append(mergeRanges(prefixes, false), mergeRanges(prefixes, true)...)
}

// abbreviated lists the first n values and how many more there are.
func abbreviated[T any](values []T, n int) string {
	s := sortedText(values[:min(n, len(values))])
	if len(values) > n {
		s += fmt.Sprintf(", … %d more", len(values)-n)
	}
	return s
}
