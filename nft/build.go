package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ftpnft/ftpnft/helper"
)

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
	setBlock   = "ftp-block"
	setBan     = "ftp-ban"
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
	ftp := helper.FTP()
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

	// Bans, then the blocklist, come first in every policy chain. The
	// ban sets are always there: their elements are run-time state, which
	// ftpnft ban and unban change and install keeps.
	var blocked []Rule
	for _, v6 := range families {
		name := setName(setBan, v6)
		rs.Sets = append(rs.Sets, Set{Name: name, V6: v6, Interval: true, Runtime: true})
		blocked = append(blocked, rule("banned source "+familyOf(v6).name, saddrIn{v6: v6, set: name}, counter{}, drop))
	}
	if len(c.Block) > 0 {
		for _, v6 := range families {
			name := setName(setBlock, v6)
			rs.Sets = append(rs.Sets, Set{Name: name, V6: v6, Interval: true, Ranges: mergeRanges(c.Block, v6)})
			blocked = append(blocked, rule("blocked source "+familyOf(v6).name, saddrIn{v6: v6, set: name}, counter{}, drop))
		}
	}

	// A new control connection is admitted by this verdict: at once, or
	// after the checks of the ftp-control chain.
	admit := stmt(accept)
	var checks *Chain
	if c.hardened() {
		admit = jump{controlChain}
		var sets []Set
		sets, checks = controlChecks(c)
		rs.Sets = append(rs.Sets, sets...)
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
		// Loopback before bans and the blocklist: lists such as FireHOL's
		// hold 127.0.0.0/8, and a ban of one of this host's own addresses
		// would cut it off from itself.
		in.Rules = append([]Rule{rule("loopback", iifname{"lo"}, accept)}, blocked...)
		in.Rules = append(in.Rules, statefulRules(c.RelatedPorts)...)
		in.Rules = append(in.Rules,
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
		fwd.Rules = append(slices.Clone(blocked), statefulRules(c.RelatedPorts)...)
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
		rule(commentRelatedFTP, ctState{stateRelated}, ctHelperIs{helper.FTP().Kernel},
			dportRange{helper.FTP().Protocol, relatedPorts}, counter{}, accept),
		rule("related icmp errors", l4proto{"icmp"}, ctState{stateRelated}, counter{}, accept),
		rule("related icmpv6 errors", l4proto{"ipv6-icmp"}, ctState{stateRelated}, counter{}, accept),
	}
}

// assignRules give the helper to NEW connections to each control port.
func assignRules(ports []uint16, what string) []Rule {
	rules := make([]Rule, len(ports))
	for i, p := range ports {
		rules[i] = rule(fmt.Sprintf("%s %s %d", commentAssign, what, p),
			dport{helper.FTP().Protocol, p}, ctState{stateNew}, ctHelperSet{HelperObject}, counter{})
	}
	return rules
}

// controlRules admit NEW connections to each control port, with verdict
// admit: accept, or a jump to the checks of the ftp-control chain.
func controlRules(ports []uint16, admit stmt) []Rule {
	rules := make([]Rule, len(ports))
	for i, p := range ports {
		rules[i] = rule(fmt.Sprintf("%s port %d", commentControl, p),
			dport{helper.FTP().Protocol, p}, ctState{stateNew}, counter{}, admit)
	}
	return rules
}

// passiveRules open the passive port range to new connections: from the
// allowed sources only, when there is an allowlist.
func passiveRules(c Config) []Rule {
	comment := "passive ports " + c.PassivePorts.String()
	r := dportRange{helper.FTP().Protocol, c.PassivePorts}
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
