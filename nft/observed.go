package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// installed is a table as read back from the kernel.
type installed struct {
	// Owned reports that ftpnft created the table: its user data or its
	// stamp chain holds ftpnft's stamp (or, for a table from before the
	// stamp, every rule carries ftpnft's comment). Of a table that is not owned nothing more
	// is read.
	Owned       bool
	Helpers     []Helper
	Sets        []Set
	Chains      []installedChain
	fingerprint fingerprint
	// stamp is the fingerprint of the ruleset ftpnft last applied to the
	// table, and stampGen the generation that commit led to, when the
	// table has a stamp: in its stamp chain, or (a table of an ftpnft
	// from before the stamp chain) in the table's own user data.
	stamp    fingerprint
	stampGen uint32
	hasStamp bool
	// stampChain is the stamp chain as read: whether it exists, and how
	// many rules it has.
	stampChain  bool
	stampRules  int
	stampHandle uint64 // the rule that holds the stamp; 0 if none
	// proven reports that the address sets' elements were not read from
	// the kernel but taken from a candidate ruleset, which the stamp
	// proved the kernel holds (read).
	proven bool
}

// stampIntact reports whether the stamp chain holds the stamp rule and
// nothing else, as ftpnft leaves it.
func (in *installed) stampIntact() bool {
	return in.stampChain && in.stampRules == 1 && in.stampHandle != 0
}

// modified reports whether the table was changed since ftpnft wrote it:
// by hand (nft flush table, a rule added) or by another program.
func (in *installed) modified() bool { return in.hasStamp && in.stamp != in.fingerprint }

type installedChain struct {
	Chain
	rules []*nftables.Rule
}

// read returns the table named name in family inet, or nil if there is none.
// Of a table that ftpnft did not create it reads nothing more, unless
// foreign is true.
//
// The elements of address sets are read last, and only when needed: a
// million take the kernel a minute to dump. When the table's stamp was
// written at generation gen (nothing was committed since) and one of the
// candidate rulesets, with its address sets in place of the kernel's,
// has the stamp's fingerprint, the kernel holds that candidate's sets;
// read takes them from it ([installed.proven]).
func read(c *conn, name string, foreign bool, gen uint32, candidates ...candidate) (*installed, error) {
	udata, found, err := c.table(name)
	if err != nil || !found {
		return nil, err
	}
	if err := c.ctx.Err(); err != nil { // google/nftables' dumps below cannot be interrupted
		return nil, &Error{Op: "read", Table: name, Err: err}
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	in := &installed{}
	in.stampGen, in.stamp, in.hasStamp = parseStamp(udata)

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, &Error{Op: "list chains", Table: name, Err: classify(err)}
	}
	rulesSeen, ownedRules := 0, 0
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return nil, &Error{Op: "list rules", Table: name, Err: classify(err)}
		}
		if ch.Name == stampChain && ch.Hooknum == nil {
			in.readStampChain(rules)
			continue
		}
		ic := installedChain{Chain: chainOf(ch), rules: rules}
		for _, r := range rules {
			rulesSeen++
			comment := commentOf(r.UserData)
			if strings.HasPrefix(comment, commentPrefix) {
				ownedRules++
			}
			ic.Rules = append(ic.Rules, Rule{Comment: strings.TrimPrefix(comment, commentPrefix)})
		}
		in.Chains = append(in.Chains, ic)
	}
	in.Owned = in.hasStamp || rulesSeen > 0 && ownedRules == rulesSeen
	if !in.Owned && !foreign {
		return &installed{}, nil
	}
	if c.ownershipOnly {
		return in, nil // Remove needs no more: its sets may hold a million
	}

	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, &Error{Op: "list objects", Table: name, Err: classify(err)}
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		h := Helper{Name: no.Name, Type: fmt.Sprintf("object type %d", no.Type), objType: uint32(no.Type)}
		if ct, ok := no.Obj.(*expr.CtHelper); ok && no.Type == nftables.ObjTypeCtHelper {
			h = Helper{Name: no.Name, Type: ct.Name, Protocol: protoName(ct.L4Proto)}
			if ct.L3Proto != unix.NFPROTO_INET {
				h.Protocol += fmt.Sprintf(" l3proto %d", ct.L3Proto)
			}
		}
		in.Helpers = append(in.Helpers, h)
	}

	sets, err := c.GetSets(table)
	if err != nil {
		return nil, &Error{Op: "list sets", Table: name, Err: classify(err)}
	}
	for _, st := range sets {
		if st.Anonymous {
			continue // part of a rule, which the fingerprint holds
		}
		s := Set{Name: st.Name, V6: st.KeyType.Name == nftables.TypeIP6Addr.Name, Interval: st.Interval,
			Dynamic: st.Dynamic, Size: st.Size}
		if st.HasTimeout {
			s.Timeout = st.Timeout
			// Timeouts on each element only: a set of bans.
			s.Runtime = st.Timeout == 0 && st.Interval
		}
		switch st.KeyType.Name {
		case nftables.TypeIPAddr.Name, nftables.TypeIP6Addr.Name:
		default:
			// Not a set of ftpnft's: its elements are not addresses.
			s.otherKey = st.KeyType.Name
		}
		in.Sets = append(in.Sets, s)
	}
	if in.proveSets(gen, candidates) {
		return in, nil
	}
	for i, s := range in.Sets {
		if !s.holdsRanges() {
			continue
		}
		els, err := c.setElements(name, s.Name)
		if err != nil {
			return nil, &Error{Op: "list set elements", Table: name, Err: classify(err)}
		}
		in.Sets[i].Ranges = rangesOf(els)
	}
	in.fingerprint = fingerprintOf(in.Helpers, in.Sets, in.Chains, installedRules)
	return in, nil
}

// readStampChain notes the rules of the stamp chain, and the stamp one of
// them holds.
func (in *installed) readStampChain(rules []*nftables.Rule) {
	in.stampChain = true
	for _, r := range rules {
		in.stampRules++
		if gen, fp, ok := parseStamp(r.UserData); ok && in.stampHandle == 0 {
			in.stampGen, in.stamp, in.hasStamp, in.stampHandle = gen, fp, true, r.Handle
		}
	}
}

// proveSets fills in the address sets from the first candidate that the
// stamp proves, and reports whether one was: the stamp was written at gen
// and the table, with the candidate's address sets, has the stamp's
// fingerprint.
func (in *installed) proveSets(gen uint32, candidates []candidate) bool {
	if !in.hasStamp || in.stampGen != gen {
		return false
	}
	for _, next := range candidates {
		cand := next()
		if cand == nil {
			continue
		}
		sets := slices.Clone(in.Sets)
		ok := true
		for i, s := range sets {
			if !s.holdsRanges() {
				continue
			}
			j := slices.IndexFunc(cand.Sets, func(x Set) bool { return x.Name == s.Name })
			// The digest reads every address as 16 bytes: the family
			// must be checked apart.
			if j < 0 || cand.Sets[j].V6 != s.V6 || !sameFamily(cand.Sets[j].Ranges, s.V6) {
				ok = false
				break
			}
			sets[i].Ranges = cand.Sets[j].Ranges
		}
		if !ok {
			continue
		}
		if fp := fingerprintOf(in.Helpers, sets, in.Chains, installedRules); fp == in.stamp {
			in.Sets, in.fingerprint, in.proven = sets, fp, true
			return true
		}
	}
	return false
}

// chainOf describes a chain read back from the kernel.
func chainOf(ch *nftables.Chain) Chain {
	c := Chain{Name: ch.Name, Type: string(ch.Type)}
	if ch.Hooknum != nil {
		c.Hook = hookOf(*ch.Hooknum)
	}
	if ch.Priority != nil {
		c.Priority = int32(*ch.Priority)
	}
	if ch.Policy != nil {
		c.Policy = PolicyAccept
		if *ch.Policy == nftables.ChainPolicyDrop {
			c.Policy = PolicyDrop
		}
	}
	return c
}

func protoName(n uint8) string {
	for name, v := range protoNumbers {
		if v == n {
			return name
		}
	}
	return fmt.Sprintf("protocol %d", n)
}

// table reads the user data of table in family inet, and whether it exists.
func (c *conn) table(name string) (udata []byte, found bool, err error) {
	ms, err := c.dump(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return nil, false, &Error{Op: "list tables", Err: classify(err)}
	}
	for _, m := range ms {
		if uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWTABLE && nlio.StringAttr(m, unix.NFTA_TABLE_NAME) == name {
			return nlio.Attr(m, nftaTableUserdata), true, nil
		}
	}
	return nil, false, nil
}

// stamped reports whether table carries the stamp of fp at the current
// generation: ftpnft last applied a ruleset with fingerprint fp, and
// nothing has been committed since. It reads three small answers: the
// generation, the tables and the stamp chain's rules.
func (c *conn) stamped(table string, fp fingerprint) (bool, error) {
	gen, err := c.generation()
	if err != nil {
		return false, err
	}
	st, found, err := c.stampOf(table)
	return found && st.ok && st.gen == gen && st.fp == fp, err
}

// tableStamp is the stamp a table carries: in its stamp rule (handle not
// 0), or, for a table from before the stamp chain, in its own user data.
// ok is false when it has none: the table is not ftpnft's, or (with rules
// that all carry ftpnft's comment) loaded from the text of Render.
type tableStamp struct {
	gen    uint32
	fp     fingerprint
	ok     bool
	handle uint64
}

// stampOf reads table's stamp with two small dumps, and whether the table
// exists.
func (c *conn) stampOf(table string) (st tableStamp, found bool, err error) {
	udata, found, err := c.table(table)
	if err != nil || !found {
		return st, found, err
	}
	rule, handle, err := c.stampRuleOf(table)
	if err != nil {
		return st, true, err
	}
	if rule != nil {
		udata, st.handle = rule, handle
	}
	st.gen, st.fp, st.ok = parseStamp(udata)
	return st, true, nil
}

// stampRuleOf returns the user data and the handle of the stamp rule in
// table's stamp chain; nil when there is none.
func (c *conn) stampRuleOf(table string) ([]byte, uint64, error) {
	data := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	data = nlio.AppendAttr(data, unix.NFTA_RULE_TABLE, cstring(table))
	data = nlio.AppendAttr(data, unix.NFTA_RULE_CHAIN, cstring(stampChain))
	ms, err := c.dump(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: data,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, 0, nil // no such chain
	}
	if err != nil {
		return nil, 0, &Error{Op: "list rules", Table: table, Err: classify(err)}
	}
	for _, m := range ms {
		if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWRULE {
			continue
		}
		if udata := nlio.Attr(m, unix.NFTA_RULE_USERDATA); len(udata) > 0 {
			if _, _, ok := parseStamp(udata); ok {
				return udata, handleAttr(m, unix.NFTA_RULE_HANDLE), nil
			}
		}
	}
	return nil, 0, nil
}

// setElements reads the elements of set in table with one dump.
func (c *conn) setElements(table, set string) ([]element, error) {
	data := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	data = nlio.AppendAttr(data, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(table))
	data = nlio.AppendAttr(data, unix.NFTA_SET_ELEM_LIST_SET, cstring(set))
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: data,
	}
	msgs, err := c.dump(req)
	if err != nil {
		return nil, err
	}
	return elementsOf(msgs)
}

// elementsOf decodes the elements of NFT_MSG_NEWSETELEM messages, as the
// kernel sends them in answer to a dump.
func elementsOf(msgs []netlink.Message) ([]element, error) {
	var els []element
	for _, m := range msgs {
		if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWSETELEM || len(m.Data) < 4 {
			continue
		}
		err := nlio.EachAttr(m.Data[4:], func(typ uint16, list []byte) error {
			if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				return nil
			}
			return nlio.EachAttr(list, func(_ uint16, item []byte) error {
				var e element
				err := nlio.EachAttr(item, func(typ uint16, data []byte) error {
					switch typ {
					case unix.NFTA_SET_ELEM_FLAGS:
						if len(data) == 4 {
							e.IntervalEnd = binary.BigEndian.Uint32(data)&unix.NFT_SET_ELEM_INTERVAL_END != 0
						}
					case unix.NFTA_SET_ELEM_TIMEOUT, unix.NFTA_SET_ELEM_EXPIRATION:
						if len(data) == 8 {
							d := time.Duration(binary.BigEndian.Uint64(data)) * time.Millisecond
							if typ == unix.NFTA_SET_ELEM_TIMEOUT {
								e.Timeout = d
							} else {
								e.Expires = d
							}
						}
					case unix.NFTA_SET_ELEM_KEY:
						return nlio.EachAttr(data, func(typ uint16, value []byte) error {
							if typ == unix.NFTA_DATA_VALUE {
								e.Key, _ = netip.AddrFromSlice(value)
							}
							return nil
						})
					}
					return nil
				})
				if err == nil && !e.Key.IsValid() {
					err = errors.New("set element without an address key")
				}
				els = append(els, e)
				return err
			})
		})
		if err != nil {
			return nil, err
		}
	}
	return els, nil
}

// Dump returns the table of family inet named table as the kernel holds
// it, in nft syntax: its ct helpers, sets (with the elements of address
// interval sets), chains and rules, each rule in the statements ftpnft
// writes; a rule with other statements shows as a comment with its handle.
// It reads any table, also one that ftpnft did not create, and changes
// nothing. A missing table is an error wrapping os.ErrNotExist.
func Dump(ctx context.Context, table string, opts ...Option) (string, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return "", err
	}
	defer release()
	in, err := read(c, table, true, 0)
	if err != nil {
		return "", err
	}
	if in == nil {
		return "", &Error{Op: "dump", Table: table, Err: fmt.Errorf("no such table: %w", os.ErrNotExist)}
	}
	var b strings.Builder
	in.ruleset(table).render(&b)
	return b.String(), nil
}

// ruleset describes the table as a Ruleset, for rendering: rules as the
// statements recognised in them.
func (in *installed) ruleset(name string) *Ruleset {
	rs := &Ruleset{Table: name, Helpers: in.Helpers, Sets: in.Sets}
	for _, ic := range in.Chains {
		ch := ic.Chain
		ch.Rules = nil
		for _, r := range installedRules(ic) {
			comment, ours := r.comment()
			stmts, ok := decodeStmts(r.exprs)
			ch.Rules = append(ch.Rules, Rule{Comment: comment, stmts: stmts, foreign: !ours, unknown: !ok, handle: r.handle})
		}
		rs.Chains = append(rs.Chains, ch)
	}
	return rs
}

// hookOf names a hook of the ip, ip6 and inet families, as nft does.
func hookOf(h nftables.ChainHook) string {
	for name, n := range hookNumbers {
		if n == h {
			return name
		}
	}
	return fmt.Sprintf("hook %d", h)
}

// sameFamily reports whether every address of ranges is of the family of a
// set of IPv6 addresses (v6) or of IPv4 ones.
func sameFamily(ranges []AddrRange, v6 bool) bool {
	for _, r := range ranges {
		if r.From.Is6() != v6 || r.To.Is6() != v6 {
			return false
		}
	}
	return true
}
