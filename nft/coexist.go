package nft

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/helper"
)

// A Finding is another firewall's base chain that drops (or rejects)
// traffic that FTP under the configuration needs, or that ftpnft's policy
// would drop although the other firewall admits it. nftables runs every
// base chain at a hook, in every table: ftpnft's accept cannot rescue a
// packet that another table drops.
type Finding struct {
	Family   string `json:"family"` // ip, ip6, inet
	Table    string `json:"table"`
	Chain    string `json:"chain"`
	Hook     string `json:"hook"`
	Priority int32  `json:"priority"`
	// Manager is who wrote the table, recognised by its name and chains:
	// firewalld, ufw, docker, kube-proxy, iptables-nft, nftables.conf, or
	// "" when unknown.
	Manager string `json:"manager"`
	// Traffic is what is dropped, e.g. "new control connections to port 21".
	Traffic string `json:"traffic"`
	// Where is the rule or policy that drops it: "policy drop", or "rule
	// handle 7 (comment ...)".
	Where string `json:"where"`
	// Certain is true when no rule before Where could have accepted the
	// traffic; otherwise the reading is a suspicion (rules ftpnft cannot
	// follow statically, such as set lookups or address matches).
	Certain bool `json:"certain"`
	// Fix says what to do, in the manager's own terms.
	Fix string `json:"fix"`
	// DroppedByFtpnft marks the other way round: the chain admits Traffic
	// (a service), and ftpnft's input chain, under policy drop, drops it.
	DroppedByFtpnft bool `json:"dropped_by_ftpnft"`
}

// String formats the finding as one line for people.
func (f Finding) String() string {
	how := "drops"
	if !f.Certain {
		how = "may drop"
	}
	by := ""
	if f.Manager != "" {
		by = ", " + f.Manager
	}
	if f.DroppedByFtpnft {
		return fmt.Sprintf("%s %s %s (hook %s priority %d%s) admits %s, which ftpnft's input chain (policy drop) drops; fix: %s",
			f.Family, f.Table, f.Chain, f.Hook, f.Priority, by, f.Traffic, f.Fix)
	}
	return fmt.Sprintf("%s %s %s (hook %s priority %d%s) %s %s: %s; fix: %s",
		f.Family, f.Table, f.Chain, f.Hook, f.Priority, by, how, f.Traffic, f.Where, f.Fix)
}

// Coexistence reads every other table's base chains (all families) at the
// hooks that FTP's packets pass for cfg's roles and returns what would drop
// them: new control connections to the control ports, RELATED data
// connections, and, when cfg's policy is drop, the services that another
// firewall admits on input and ftpnft's input chain would now drop. It
// changes nothing.
func Coexistence(ctx context.Context, cfg Config, opts ...Option) ([]Finding, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	chains, err := c.ListChains()
	if err != nil {
		return nil, &Error{Op: "list chains", Err: classify(err)}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "coexistence", Err: err}
	}
	src := &chainRules{c: c, chains: chains, cache: map[*nftables.Chain][]*nftables.Rule{}, sets: map[string]*setContent{}}
	var out []Finding
	for _, ch := range chains {
		if ch.Hooknum == nil || ch.Type != nftables.ChainTypeFilter || ch.Table == nil ||
			ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == cfg.Table {
			continue
		}
		hook := hookName(ch.Table.Family, *ch.Hooknum)
		for _, p := range probesAt(cfg, hook) {
			if !familyCarries(ch.Table.Family, p.v6) {
				continue
			}
			o, err := evaluate(src, ch, p, true, 0)
			if err != nil {
				return nil, err
			}
			f := finding(src, ch, hook, p)
			switch {
			case o.verdict == "drop":
				f.Where, f.Certain = describeRule(o.rule), o.certain && o.maybeDrop == nil
				f.Fix = fixFor(f.Manager, ch, p)
				out = appendFinding(out, f)
			case o.maybeDrop != nil:
				f.Where, f.Certain = describeRule(o.maybeDrop), false
				f.Fix = fixFor(f.Manager, ch, p)
				out = appendFinding(out, f)
			}
		}
		if hook == "input" && cfg.Policy == PolicyDrop && (cfg.Has(RoleServer) || cfg.Has(RoleClient)) {
			services, err := admittedServices(src, ch, 0)
			if err != nil {
				return nil, err
			}
			for _, s := range services {
				if cfg.admitsService(s) {
					continue
				}
				f := finding(src, ch, hook, probe{})
				f.Traffic, f.DroppedByFtpnft = "new connections to "+s.String(), true
				f.Where, f.Certain = "ftpnft's policy drop", true
				f.Fix = fmt.Sprintf("add --allow %s, or --policy accept to leave the policy to %s", s, orThisTable(f.Manager))
				out = appendFinding(out, f)
			}
		}
	}
	return out, nil
}

// appendFinding adds f unless the same chain already reported the same
// traffic (an inet chain is read for IPv4 and for IPv6).
func appendFinding(out []Finding, f Finding) []Finding {
	for _, g := range out {
		if g.Family == f.Family && g.Table == f.Table && g.Chain == f.Chain && g.Traffic == f.Traffic {
			return out
		}
	}
	return append(out, f)
}

func orThisTable(manager string) string {
	if manager == "" {
		return "that table"
	}
	return manager
}

// chainRules reads rules once per chain.
type chainRules struct {
	c      *conn
	chains []*nftables.Chain
	cache  map[*nftables.Chain][]*nftables.Rule
	sets   map[string]*setContent // by table, name and family; nil: unreadable
}

func (s *chainRules) rules(ch *nftables.Chain) ([]*nftables.Rule, error) {
	if rs, ok := s.cache[ch]; ok {
		return rs, nil
	}
	rs, err := s.c.GetRules(ch.Table, ch)
	if err != nil {
		return nil, &Error{Op: "list rules", Table: ch.Table.Name, Err: classify(err)}
	}
	s.cache[ch] = rs
	return rs, nil
}

func (s *chainRules) set(t *nftables.Table, name string) *setContent {
	key := t.Name + "\x00" + name + "\x00" + familyName(t.Family)
	if c, ok := s.sets[key]; ok {
		return c
	}
	var c *setContent
	if set, err := s.c.GetSetByName(t, name); err == nil {
		if got, err := s.c.GetSetElements(set); err == nil {
			c = &setContent{elements: got, interval: set.Interval}
		}
	}
	s.sets[key] = c
	return c
}

func (s *chainRules) chain(t *nftables.Table, name string) *nftables.Chain {
	for _, ch := range s.chains {
		if ch.Name == name && ch.Table.Name == t.Name && ch.Table.Family == t.Family {
			return ch
		}
	}
	return nil
}

// probesAt returns the kinds of packet FTP needs to pass hook, for cfg's
// roles: new control connections to each control port (inbound for a
// server or router, outbound for a client) and RELATED data connections,
// over IPv4 and IPv6.
func probesAt(cfg Config, hook string) []probe {
	var ps []probe
	ftp := helper.FTP()
	var dtype uint32 // where the packets go: this host, or on
	add := func(p probe) {
		p.daddrType = dtype
		// Without DNAT the status bits are known: IPS_EXPECTED (1) for a
		// related connection, none of interest for a new one.
		if len(cfg.DNAT) == 0 {
			p.statusKnown = true
			if p.state == stateRelated {
				p.status = 1
			}
		}
		for _, v6 := range families {
			p.v6 = v6
			ps = append(ps, p)
		}
	}
	control := func() {
		for _, port := range cfg.Ports {
			add(probe{state: stateNew, proto: unix.IPPROTO_TCP, dport: port, what: fmt.Sprintf("new control connections to port %d", port)})
		}
	}
	related := probe{state: stateRelated, proto: unix.IPPROTO_TCP, helper: ftp.Kernel, ports: cfg.RelatedPorts,
		what: "RELATED data connections (expected by the ftp helper)"}
	inbound := cfg.Has(RoleServer)
	switch {
	case hook == "input":
		dtype = unix.RTN_LOCAL
	case hook == "forward", hook == "output":
		dtype = unix.RTN_UNICAST
	case hook == "prerouting" && !cfg.Has(RoleRouter):
		dtype = unix.RTN_LOCAL
	}
	switch hook {
	case "prerouting":
		if inbound || cfg.Has(RoleRouter) {
			control()
		}
		add(related)
	case "input":
		if inbound {
			control()
		}
		if inbound || cfg.Has(RoleClient) {
			add(related)
		}
	case "forward":
		if cfg.Has(RoleRouter) {
			control()
			add(related)
		}
	case "output":
		if cfg.Has(RoleClient) {
			control()
			add(related)
		}
	}
	return ps
}

// familyCarries reports whether a table of family sees packets of the
// probe's address family.
func familyCarries(f nftables.TableFamily, v6 bool) bool {
	switch f {
	case nftables.TableFamilyINet:
		return true
	case nftables.TableFamilyIPv4:
		return !v6
	case nftables.TableFamilyIPv6:
		return v6
	}
	return false
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family %d", f)
}

// hookName names a hook of the inet, ip and ip6 families.
func hookName(f nftables.TableFamily, h nftables.ChainHook) string {
	if f == nftables.TableFamilyNetdev || f == nftables.TableFamilyARP || f == nftables.TableFamilyBridge {
		return fmt.Sprintf("%s hook %d", familyName(f), h)
	}
	return hookOf(h)
}

// finding starts a Finding about chain ch.
func finding(src *chainRules, ch *nftables.Chain, hook string, p probe) Finding {
	f := Finding{Family: familyName(ch.Table.Family), Table: ch.Table.Name, Chain: ch.Name, Hook: hook, Traffic: p.what}
	if ch.Priority != nil {
		f.Priority = int32(*ch.Priority)
	}
	f.Manager = managerOf(src, ch.Table)
	return f
}

// managerOf recognises who wrote a table, by its name and its chains.
func managerOf(src *chainRules, t *nftables.Table) string {
	has := func(prefix string) bool {
		for _, ch := range src.chains {
			if ch.Table.Name == t.Name && ch.Table.Family == t.Family && strings.HasPrefix(ch.Name, prefix) {
				return true
			}
		}
		return false
	}
	switch {
	case t.Family == nftables.TableFamilyINet && t.Name == "firewalld":
		return "firewalld"
	case t.Name == "kube-proxy":
		return "kube-proxy"
	case (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6) && has("ufw"):
		return "ufw"
	case (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6) && has("DOCKER"):
		return "docker"
	case (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6) && (t.Name == "filter" || t.Name == "mangle" || t.Name == "raw"):
		return "iptables-nft"
	case t.Family == nftables.TableFamilyINet && t.Name == "filter":
		return "nftables.conf"
	}
	return ""
}

// fixFor says how to let p through chain ch, in the manager's terms.
func fixFor(manager string, ch *nftables.Chain, p probe) string {
	related := p.state == stateRelated
	ipt := "iptables"
	if ch.Table.Family == nftables.TableFamilyIPv6 {
		ipt = "ip6tables"
	}
	switch manager {
	case "firewalld":
		if related {
			return "firewalld accepts related connections in its own chains; check the zone of the interface (firewall-cmd --get-active-zones), or use --policy accept"
		}
		return fmt.Sprintf("firewall-cmd --add-port=%d/tcp (and again with --permanent); for port 21, firewall-cmd --add-service=ftp", p.dport)
	case "ufw":
		if related {
			return "ufw admits related connections unless its before.rules were changed; restore the ct state related line in /etc/ufw/before.rules"
		}
		return fmt.Sprintf("ufw allow %d/tcp", p.dport)
	case "docker":
		return "Docker's chains decide forwarded traffic; add the rule to DOCKER-USER: " + ipt + " -I DOCKER-USER -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT"
	case "kube-proxy":
		return "kube-proxy's tables are rewritten by kube-proxy; change the Service or NetworkPolicy instead"
	case "iptables-nft":
		if related {
			return fmt.Sprintf("%s -I %s -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT", ipt, ch.Name)
		}
		return fmt.Sprintf("%s -I %s -p tcp --dport %d -m conntrack --ctstate NEW -j ACCEPT", ipt, ch.Name, p.dport)
	}
	if related {
		return fmt.Sprintf("nft insert rule %s %s %s ct state related ct helper \"ftp\" accept", familyName(ch.Table.Family), ch.Table.Name, ch.Name)
	}
	return fmt.Sprintf("nft insert rule %s %s %s tcp dport %d ct state new accept", familyName(ch.Table.Family), ch.Table.Name, ch.Name, p.dport)
}

// admittedServices lists the TCP and UDP ports to which rules of a chain,
// and of the chains it jumps to, accept new connections, by destination
// port (nft's payload match or iptables' tcp/udp match of one port).
func admittedServices(src ruleSource, ch *nftables.Chain, depth int) ([]Service, error) {
	rules, err := src.rules(ch)
	if err != nil {
		return nil, err
	}
	var out []Service
	for _, r := range rules {
		sets := func(name string) *setContent { return src.set(ch.Table, name) }
		if _, v := matchRule(r.Exprs, probe{}, sets); (v.kind == "jump" || v.kind == "goto") && depth < 16 {
			// ufw keeps its services in chains that INPUT jumps to.
			if target := src.chain(ch.Table, v.chain); target != nil {
				more, err := admittedServices(src, target, depth+1)
				if err != nil {
					return nil, err
				}
				for _, s := range more {
					if !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
			continue
		}
		s, ok := servicePort(r.Exprs)
		if !ok {
			continue
		}
		p := probe{state: stateNew, proto: unix.IPPROTO_TCP, dport: s.Port}
		if s.Protocol == "udp" {
			p.proto = unix.IPPROTO_UDP
		}
		if m, v := matchRule(r.Exprs, p, sets); m == no || v.kind != "accept" {
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// servicePort finds "tcp dport N" (or udp) in a rule: l4proto compared,
// then the destination port compared for equality; or an iptables tcp/udp
// match of one destination port.
func servicePort(exprs []expr.Any) (Service, bool) {
	var s Service
	for i, e := range exprs {
		switch e := e.(type) {
		case *expr.Cmp:
			prev := func() expr.Any {
				if i > 0 {
					return exprs[i-1]
				}
				return nil
			}()
			if m, ok := prev.(*expr.Meta); ok && m.Key == expr.MetaKeyL4PROTO && e.Op == expr.CmpOpEq && len(e.Data) == 1 {
				switch e.Data[0] {
				case unix.IPPROTO_TCP:
					s.Protocol = "tcp"
				case unix.IPPROTO_UDP:
					s.Protocol = "udp"
				}
			}
			if p, ok := prev.(*expr.Payload); ok && p.Base == expr.PayloadBaseTransportHeader && p.Offset == 2 && e.Op == expr.CmpOpEq && s.Protocol != "" {
				s.Port = be16(e.Data)
			}
		case *expr.Match:
			switch info := e.Info.(type) {
			case *xt.Tcp:
				if info.DstPorts[0] == info.DstPorts[1] && info.InvFlags == 0 {
					s = Service{"tcp", info.DstPorts[0]}
				}
			case *xt.Udp:
				if info.DstPorts[0] == info.DstPorts[1] && info.InvFlags == 0 {
					s = Service{"udp", info.DstPorts[0]}
				}
			}
		}
	}
	return s, s.Protocol != "" && s.Port != 0
}

// admitsService reports whether ftpnft's input chain under c admits new
// connections to service s (from the allowed sources).
func (c Config) admitsService(s Service) bool {
	switch {
	case c.Policy == PolicyAccept, slices.Contains(c.Allow, s):
		return true
	case s.Protocol != "tcp" || !c.Has(RoleServer):
		return false
	}
	return slices.Contains(c.Ports, s.Port) || !c.PassivePorts.IsZero() && c.PassivePorts.Lo <= s.Port && s.Port <= c.PassivePorts.Hi
}
