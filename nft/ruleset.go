package nft

import (
	"fmt"
	"slices"
	"strings"

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

// commentPrefix starts the comment of every rule ftpnft writes. A table
// whose rules all carry it is one that ftpnft created (see [Ruleset.Owned]).
const commentPrefix = "ftpnft: "

// Ruleset is the desired content of ftpnft's table: a model that renders as
// nft text and encodes as netlink messages. Build it with [Build].
type Ruleset struct {
	// Table is the table's name; its family is always inet.
	Table string
	// Helpers are the ct helper objects.
	Helpers []Helper
	// Chains are the base chains, in the order they are created.
	Chains []Chain
}

// Helper is a ct helper object.
type Helper struct {
	Name     string `json:"name"`     // object name, referenced by "ct helper set"
	Type     string `json:"type"`     // kernel helper name
	Protocol string `json:"protocol"` // "tcp"
}

// Chain is a base chain of the table.
type Chain struct {
	Name     string
	Hook     string // "prerouting" or "input"
	Priority int32  // 0 is "filter"
	Policy   Policy
	Rules    []Rule
}

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

// Build turns a validated configuration into the ruleset to install.
//
// The prerouting chain runs at filter priority, after conntrack (-200) and
// after DNAT (-100), and gives the helper to NEW connections to the control
// ports. The input chain admits ESTABLISHED traffic, RELATED traffic only when
// the ftp helper expected it (plus ICMP errors about known connections),
// loopback, IPv6 neighbour discovery, new control connections and the
// allowed services, then applies the policy.
func Build(c Config) (*Ruleset, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ftp := helper.FTP
	rs := &Ruleset{
		Table:   c.Table,
		Helpers: []Helper{{Name: HelperObject, Type: ftp.Kernel, Protocol: ftp.Protocol}},
	}

	pre := Chain{Name: "prerouting", Hook: "prerouting", Priority: 0, Policy: PolicyAccept}
	for _, p := range c.Ports {
		pre.Rules = append(pre.Rules, rule(fmt.Sprintf("%s port %d", commentAssign, p),
			dport{ftp.Protocol, p}, ctState{stateNew}, ctHelperSet{HelperObject}, counter{}))
	}

	in := Chain{Name: "input", Hook: "input", Priority: 0, Policy: c.Policy}
	in.Rules = []Rule{
		rule("drop invalid", ctState{stateInvalid}, counter{}, drop),
		rule("established", ctState{stateEstablished}, counter{}, accept),
		rule(commentRelatedFTP, ctState{stateRelated}, ctHelperIs{ftp.Kernel}, counter{}, accept),
		rule("related icmp errors", l4proto{"icmp"}, ctState{stateRelated}, counter{}, accept),
		rule("related icmpv6 errors", l4proto{"ipv6-icmp"}, ctState{stateRelated}, counter{}, accept),
		rule("loopback", iifname{"lo"}, accept),
		// Router/neighbour solicitation and advertisement (133-136). Conntrack
		// leaves them untracked, so only an explicit rule admits them, and
		// without them IPv6 cannot resolve a neighbour under policy drop.
		rule("ipv6 neighbour discovery", icmpv6Types{133, 136}, accept),
	}
	for _, p := range c.Ports {
		in.Rules = append(in.Rules, rule(fmt.Sprintf("%s port %d", commentControl, p),
			dport{ftp.Protocol, p}, ctState{stateNew}, counter{}, accept))
	}
	for _, s := range c.Allow {
		in.Rules = append(in.Rules, rule("allow "+s.String(),
			dport{s.Protocol, s.Port}, counter{}, accept))
	}

	rs.Chains = []Chain{pre, in}
	return rs, nil
}

// WithoutHelper returns a copy of rs without its ct helper objects and the
// rules that assign them: the same policy, minus what ftpnft is for. It is the
// negative control of ftpnft's tests and of selftest: under it passive FTP
// data connections are dropped.
func (rs *Ruleset) WithoutHelper() *Ruleset {
	bare := &Ruleset{Table: rs.Table}
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
	for i, c := range rs.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy %s;\n", c.Hook, priorityText(c.Priority), c.Policy)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s comment %q\n", r.Text(), commentPrefix+r.Comment)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func priorityText(p int32) string {
	switch {
	case p == 0:
		return "filter"
	case p > 0:
		return fmt.Sprintf("filter + %d", p)
	default:
		return fmt.Sprintf("filter - %d", -p)
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
