package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/ftpnft/ftpnft/helper"
)

// HelperObject is the name of the ct helper object ftpnft creates. It is
// deliberately not "ftp": "ct helper set" names the object, while the
// "ct helper" match names the kernel helper, and the two must not be
// confused when reading a ruleset.
const HelperObject = "ftp-helper"

// commentPrefix starts the comment of every rule ftpnft writes. Status
// names rules by their comments; a table whose rules all carry it and
// that has no stamp is one of ftpnft's from before the stamp, or loaded
// from the text of Render.
const commentPrefix = "ftpnft: "

// Ruleset is the desired content of ftpnft's table: a model that renders as
// nft text and encodes as netlink messages. Build it with [Build].
type Ruleset struct {
	// Table is the table's name; its family is always inet.
	Table string
	// Helpers are the ct helper objects.
	Helpers []Helper
	// Sets are the named sets: allowed sources and per-source state.
	Sets []Set
	// Chains are the base chains and the regular chain ftp-control, in
	// the order they are rendered.
	Chains []Chain
}

// Helper is a ct helper object.
type Helper struct {
	Name     string `json:"name"`     // object name, referenced by "ct helper set"
	Type     string `json:"type"`     // kernel helper name
	Protocol string `json:"protocol"` // "tcp"
}

// Chain is a chain of the table: a base chain on a hook, or a regular
// chain (no hook) that rules jump to.
type Chain struct {
	Name     string
	Type     string // "filter" or "nat"; "" for a regular chain
	Hook     string // "prerouting", "input", "forward", "output" or "postrouting"; "" for a regular chain
	Priority int32  // 0 is "filter", -100 "dstnat", 100 "srcnat"
	Policy   Policy
	Rules    []Rule
}

// The chain types.
const (
	typeFilter = "filter"
	typeNAT    = "nat"
)

// Standard priorities, as nft names them.
const (
	prioFilter = 0
	prioDstNAT = -100
	prioSrcNAT = 100
)

// Rule is one rule: statements and the comment that names its purpose.
type Rule struct {
	Comment string
	stmts   []stmt
}

// Text is the rule in nft syntax, without the comment.
func (r Rule) Text() string {
	parts := make([]string, len(r.stmts))
	for i, s := range r.stmts {
		parts[i] = s.text()
	}
	return strings.Join(parts, " ")
}

// Exprs returns the rule's netlink expressions.
func (r Rule) Exprs() []expr.Any {
	var out []expr.Any
	for _, s := range r.stmts {
		out = append(out, s.exprs()...)
	}
	return out
}

// UserData returns the rule's comment encoded as nft stores it.
func (r Rule) UserData() []byte {
	return userdata.AppendString(nil, userdata.TypeComment, commentPrefix+r.Comment)
}

func rule(comment string, stmts ...stmt) Rule { return Rule{Comment: comment, stmts: stmts} }

// Comments used by status to recognise rules.
const (
	commentAssign     = "assign ftp helper"
	commentRelatedFTP = "related ftp data"
	commentControl    = "ftp control"
)

// controlChain is the regular chain that checks new control connections
// (allowed sources, connection limit, rate) when any such check is
// configured.
const controlChain = "ftp-control"

// Names of the sets; the suffix is the family.
const (
	setSources = "ftp-sources"
	setConn    = "ftp-conn"
	setRate    = "ftp-rate"
)

// dynamicSetSize bounds the per-source sets: at most this many source
// addresses are tracked per family at once.
const dynamicSetSize = 65535

// families are IPv4 (false) and IPv6 (true), for rules made once per family.
var families = []bool{false, true}

func setName(base string, v6 bool) string {
	if v6 {
		return base + "6"
	}
	return base + "4"
}

// Build turns a validated configuration into the ruleset to install. Which
// chains it holds depends on the roles:
//
//   - dstnat (nat, prerouting, priority dstnat), with DNAT: connections to
//     this host's listen ports are translated to the inner servers.
//   - prerouting (filter, priority filter), roles server and router: NEW
//     connections to the control ports (and DNAT targets) get the helper.
//     It runs after conntrack (-200) and after DNAT (-100), so it sees the
//     translated destination and nf_nat_ftp can rewrite the inner server's
//     replies.
//   - output (filter), role client: NEW connections this host opens to the
//     control ports get the helper, so that the server's active-mode data
//     connections are expected.
//   - input (filter, the policy), roles server and client: ESTABLISHED
//     traffic, RELATED traffic only when the ftp helper expected it (plus
//     ICMP errors about known connections), loopback, IPv6 neighbour
//     discovery, new control connections (role server) and the allowed
//     services.
//   - forward (filter, the policy), role router: ESTABLISHED, RELATED by the
//     ftp helper, ICMP errors, new control connections DNATed to the inner
//     servers, and new forwarded connections to the control ports, in
//     either direction. Allowed services are not forwarded.
//   - srcnat (nat, postrouting, priority srcnat), with masquerade: traffic
//     leaving through the interfaces gets their address.
//   - ftp-control (regular), with sources, connection limits or rates: the
//     control-port rules of input and forward jump to it; it drops sources
//     not allowed, refuses sources over the connection limit, drops sources
//     over the rate, and accepts the rest. Limits count per IPv4 address
//     and per IPv6 /64. When a per-source set is full (65535 sources) the
//     kernel skips the limit rule: the limits fail open, the allowlist
//     does not.
func Build(c Config) (*Ruleset, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ftp := helper.FTP
	server, client, router := c.Has(RoleServer), c.Has(RoleClient), c.Has(RoleRouter)
	rs := &Ruleset{
		Table:   c.Table,
		Helpers: []Helper{{Name: HelperObject, Type: ftp.Kernel, Protocol: ftp.Protocol}},
	}

	if len(c.DNAT) > 0 {
		dst := Chain{Name: "dstnat", Type: typeNAT, Hook: "prerouting", Priority: prioDstNAT, Policy: PolicyAccept}
		for _, d := range c.DNAT {
			dst.Rules = append(dst.Rules, rule("dnat "+d.String(),
				nfproto{d.To.Addr().Is6()}, fibDaddrLocal{}, dport{ftp.Protocol, d.ListenPort}, counter{}, dnatTo{d.To}))
		}
		rs.Chains = append(rs.Chains, dst)
	}

	// A new control connection is admitted by this verdict: at once, or
	// after the checks of the ftp-control chain.
	admit := stmt(accept)
	var checks *Chain
	if c.hardened() {
		admit = jump{controlChain}
		var sets []Set
		sets, checks = controlChecks(c)
		rs.Sets = sets
	}

	targets := dnatTargets(c.DNAT)
	if server || router {
		pre := Chain{Name: "prerouting", Type: typeFilter, Hook: "prerouting", Priority: prioFilter, Policy: PolicyAccept}
		for _, to := range targets {
			pre.Rules = append(pre.Rules, rule(fmt.Sprintf("%s dnat to %s", commentAssign, to),
				daddr{to.Addr()}, dport{ftp.Protocol, to.Port()}, ctState{stateNew}, ctHelperSet{HelperObject}, counter{}))
		}
		pre.Rules = append(pre.Rules, assignRules(c.Ports, "port")...)
		rs.Chains = append(rs.Chains, pre)
	}

	if client {
		out := Chain{Name: "output", Type: typeFilter, Hook: "output", Priority: prioFilter, Policy: PolicyAccept}
		out.Rules = assignRules(c.Ports, "outbound port")
		rs.Chains = append(rs.Chains, out)
	}

	if server || client {
		in := Chain{Name: "input", Type: typeFilter, Hook: "input", Priority: prioFilter, Policy: c.Policy}
		in.Rules = append(statefulRules(c.RelatedPorts),
			rule("loopback", iifname{"lo"}, accept),
			// Router/neighbour solicitation and advertisement (133-136).
			// Conntrack leaves them untracked, so only an explicit rule
			// admits them, and without them IPv6 cannot resolve a
			// neighbour under policy drop.
			rule("ipv6 neighbour discovery", icmpv6Types{133, 136}, accept),
		)
		if server {
			in.Rules = append(in.Rules, controlRules(c.Ports, admit)...)
			if !c.PassivePorts.IsZero() {
				in.Rules = append(in.Rules, passiveRules(c)...)
			}
		}
		for _, s := range c.Allow {
			in.Rules = append(in.Rules, rule("allow "+s.String(), dport{s.Protocol, s.Port}, counter{}, accept))
		}
		rs.Chains = append(rs.Chains, in)
	}

	if router {
		fwd := Chain{Name: "forward", Type: typeFilter, Hook: "forward", Priority: prioFilter, Policy: c.Policy}
		fwd.Rules = statefulRules(c.RelatedPorts)
		for _, to := range targets {
			fwd.Rules = append(fwd.Rules, rule(fmt.Sprintf("%s dnat to %s", commentControl, to),
				ctStatusDNAT{}, daddr{to.Addr()}, dport{ftp.Protocol, to.Port()}, ctState{stateNew}, counter{}, admit))
		}
		fwd.Rules = append(fwd.Rules, controlRules(c.Ports, admit)...)
		rs.Chains = append(rs.Chains, fwd)
	}
	if checks != nil {
		rs.Chains = append(rs.Chains, *checks)
	}

	if len(c.Masquerade) > 0 {
		src := Chain{Name: "srcnat", Type: typeNAT, Hook: "postrouting", Priority: prioSrcNAT, Policy: PolicyAccept}
		for _, m := range c.Masquerade {
			src.Rules = append(src.Rules, rule("masquerade "+m, oifname{m}, counter{}, masquerade{}))
		}
		rs.Chains = append(rs.Chains, src)
	}
	return rs, nil
}

// statefulRules open every policy chain: invalid packets are dropped,
// established ones pass, and RELATED connections pass only when the ftp
// helper expected them and go to one of relatedPorts (by default the
// unprivileged ones), or as ICMP errors about a known connection.
func statefulRules(relatedPorts PortRange) []Rule {
	return []Rule{
		rule("drop invalid", ctState{stateInvalid}, counter{}, drop),
		rule("established", ctState{stateEstablished}, counter{}, accept),
		rule(commentRelatedFTP, ctState{stateRelated}, ctHelperIs{helper.FTP.Kernel},
			dportRange{helper.FTP.Protocol, relatedPorts}, counter{}, accept),
		rule("related icmp errors", l4proto{"icmp"}, ctState{stateRelated}, counter{}, accept),
		rule("related icmpv6 errors", l4proto{"ipv6-icmp"}, ctState{stateRelated}, counter{}, accept),
	}
}

// assignRules give the helper to NEW connections to each control port.
func assignRules(ports []uint16, what string) []Rule {
	rules := make([]Rule, len(ports))
	for i, p := range ports {
		rules[i] = rule(fmt.Sprintf("%s %s %d", commentAssign, what, p),
			dport{helper.FTP.Protocol, p}, ctState{stateNew}, ctHelperSet{HelperObject}, counter{})
	}
	return rules
}

// controlRules admit NEW connections to each control port, with verdict
// admit: accept, or a jump to the checks of the ftp-control chain.
func controlRules(ports []uint16, admit stmt) []Rule {
	rules := make([]Rule, len(ports))
	for i, p := range ports {
		rules[i] = rule(fmt.Sprintf("%s port %d", commentControl, p),
			dport{helper.FTP.Protocol, p}, ctState{stateNew}, counter{}, admit)
	}
	return rules
}

// passiveRules open the passive port range to new connections: from the
// allowed sources only, when there is an allowlist.
func passiveRules(c Config) []Rule {
	comment := "passive ports " + c.PassivePorts.String()
	r := dportRange{helper.FTP.Protocol, c.PassivePorts}
	if len(c.Sources) == 0 {
		return []Rule{rule(comment, r, ctState{stateNew}, counter{}, accept)}
	}
	var rules []Rule
	for _, v6 := range families {
		rules = append(rules, rule(comment+" "+familyOf(v6).name,
			saddrIn{v6: v6, set: setName(setSources, v6)}, r, ctState{stateNew}, counter{}, accept))
	}
	return rules
}

// controlChecks returns the sets and the regular chain that check new
// control connections, in this order: the source must be allowed, must not
// hold more than MaxConnPerSource connections (refused with a TCP reset, so
// that clients fail at once), and must not open them faster than ConnRate
// (dropped, so that a flood costs the sender time).
func controlChecks(c Config) ([]Set, *Chain) {
	var sets []Set
	ch := &Chain{Name: controlChain}
	if len(c.Sources) > 0 {
		for _, v6 := range families {
			name := setName(setSources, v6)
			sets = append(sets, Set{Name: name, V6: v6, Interval: true, Ranges: mergeRanges(c.Sources, v6)})
			ch.Rules = append(ch.Rules, rule("source not allowed "+familyOf(v6).name,
				saddrIn{v6: v6, set: name, not: true}, counter{}, drop))
		}
	}
	if c.MaxConnPerSource > 0 {
		for _, v6 := range families {
			name := setName(setConn, v6)
			sets = append(sets, Set{Name: name, V6: v6, Dynamic: true, Size: dynamicSetSize})
			// "reject with tcp reset" needs to know the packet is TCP: nft
			// adds "meta l4proto tcp" to such a rule itself; so do we.
			ch.Rules = append(ch.Rules, rule(fmt.Sprintf("over %d connections per source %s", c.MaxConnPerSource, familyOf(v6).name),
				l4proto{"tcp"}, connLimit{v6, name, c.MaxConnPerSource}, counter{}, rejectReset{}))
		}
	}
	if !c.ConnRate.IsZero() {
		for _, v6 := range families {
			name := setName(setRate, v6)
			sets = append(sets, Set{Name: name, V6: v6, Dynamic: true, Timeout: time.Minute, Size: dynamicSetSize})
			ch.Rules = append(ch.Rules, rule(fmt.Sprintf("over %s per source %s", c.ConnRate, familyOf(v6).name),
				rateOver{v6, name, c.ConnRate}, counter{}, drop))
		}
	}
	ch.Rules = append(ch.Rules, rule("ftp control accepted", counter{}, accept))
	return sets, ch
}

// dnatTargets returns the inner servers of dnat, each once, in order: two
// listen ports may forward to the same server.
func dnatTargets(dnat []DNAT) []netip.AddrPort {
	var targets []netip.AddrPort
	for _, d := range dnat {
		if !slices.Contains(targets, d.To) {
			targets = append(targets, d.To)
		}
	}
	return targets
}

// WithoutHelper returns a copy of rs without its ct helper objects and the
// rules that assign them: the same policy, minus what ftpnft is for. It is the
// negative control of ftpnft's tests and of selftest: under it passive FTP
// data connections are dropped.
func (rs *Ruleset) WithoutHelper() *Ruleset {
	bare := &Ruleset{Table: rs.Table, Sets: rs.Sets}
	for _, c := range rs.Chains {
		c.Rules = slices.DeleteFunc(slices.Clone(c.Rules), assignsHelper)
		bare.Chains = append(bare.Chains, c)
	}
	return bare
}

// assignsHelper reports whether r sets a ct helper.
func assignsHelper(r Rule) bool {
	for _, s := range r.stmts {
		if _, ok := s.(ctHelperSet); ok {
			return true
		}
	}
	return false
}

// Render returns the ruleset in nft syntax, as "nft -f" accepts it. The
// table is created if missing and emptied before it is filled, so the text
// replaces an earlier ftpnft table just as Apply does.
func (rs *Ruleset) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by ftpnft. Load with: nft -f FILE\n")
	fmt.Fprintf(&b, "table inet %s\n", rs.Table)
	fmt.Fprintf(&b, "delete table inet %s\n", rs.Table)
	fmt.Fprintf(&b, "table inet %s {\n", rs.Table)
	for _, h := range rs.Helpers {
		fmt.Fprintf(&b, "\tct helper %s {\n\t\ttype %q protocol %s\n\t\tl3proto inet\n\t}\n\n", h.Name, h.Type, h.Protocol)
	}
	for _, s := range rs.Sets {
		b.WriteString(s.text())
		b.WriteString("\n")
	}
	for i, c := range rs.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != "" {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", c.Type, c.Hook, priorityText(c.Type, c.Priority), c.Policy)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s comment %q\n", r.Text(), commentPrefix+r.Comment)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// priorityText names a chain priority as nft does: relative to "filter"
// for filter chains, to "dstnat" or "srcnat" for nat chains.
func priorityText(typ string, p int32) string {
	base, at := "filter", int32(prioFilter)
	if typ == typeNAT {
		base, at = "dstnat", prioDstNAT
		if p > 0 {
			base, at = "srcnat", prioSrcNAT
		}
	}
	switch d := p - at; {
	case d == 0:
		return base
	case d > 0:
		return fmt.Sprintf("%s + %d", base, d)
	default:
		return fmt.Sprintf("%s - %d", base, -d)
	}
}

// hookNumbers maps the hooks ftpnft uses to their netfilter numbers.
var hookNumbers = map[string]nftables.ChainHook{
	"prerouting":  *nftables.ChainHookPrerouting,
	"input":       *nftables.ChainHookInput,
	"forward":     *nftables.ChainHookForward,
	"output":      *nftables.ChainHookOutput,
	"postrouting": *nftables.ChainHookPostrouting,
}
