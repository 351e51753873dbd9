package nft

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// ReadCounters returns the counters of the rules of ftpnft's table, in
// chain order, reading nothing but its chains and rules: what a metrics
// scrape needs, as cheap with a million-network set as without. A table
// that does not exist has none; one that ftpnft did not create (no stamp)
// is an error wrapping ErrNotOwned. A rule without a comment is named by
// its handle.
func ReadCounters(ctx context.Context, table string, opts ...Option) ([]Counter, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	st, found, err := c.stampOf(table)
	if err != nil || !found {
		return nil, err
	}
	if !st.ok {
		return nil, &Error{Op: "read counters", Table: table, Err: ErrNotOwned}
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, &Error{Op: "list chains", Table: table, Err: classify(err)}
	}
	var out []Counter
	for _, ch := range chains {
		if ch.Table.Name != table || ch.Name == stampChain {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, &Error{Op: "list rules", Table: table, Err: classify(err)}
		}
		out = append(out, countersOf(ch.Name, rules)...)
	}
	return out, nil
}

// countersOf returns the counters of a chain's rules, each named by its
// comment without ftpnft's prefix.
func countersOf(chain string, rules []*nftables.Rule) []Counter {
	var out []Counter
	for _, r := range rules {
		for _, e := range r.Exprs {
			if cnt, ok := e.(*expr.Counter); ok {
				name := strings.TrimPrefix(commentOf(r.UserData), commentPrefix)
				if name == "" {
					name = fmt.Sprintf("handle %d", r.Handle)
				}
				out = append(out, Counter{Chain: chain, Rule: name, Packets: cnt.Packets, Bytes: cnt.Bytes})
			}
		}
	}
	return out
}

// Holds reports whether the kernel holds exactly rs: at once when the
// table's stamp proves it, else by reading the table and comparing.
func Holds(ctx context.Context, rs *Ruleset, opts ...Option) (bool, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return false, err
	}
	fp := rs.fingerprint()
	ok, err := c.stamped(rs.Table, fp)
	release()
	if err != nil || ok {
		return ok, err
	}
	st, err := ReadStatus(ctx, rs, opts...)
	if err != nil {
		return false, err
	}
	return st.Matches && !st.Modified, nil
}
