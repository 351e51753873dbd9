package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// A Plan is what Apply sends to make the kernel hold a ruleset: the steps of
// one batch, in the order the kernel applies them. A table that exists is
// changed in place, by difference: rules are added, deleted or replaced by
// handle, set elements added and deleted, a chain's policy changed, so that
// what does not change keeps its handles, counters and run-time state (the
// per-source connection counts and rate meters in the dynamic sets). Only
// what the kernel cannot change in place is deleted and added again in the
// same batch: a ct helper object whose fields differ (with the rules that
// refer to it), a set whose type or flags differ (with its rules), a base
// chain whose hook or priority differ. The table itself is never deleted.
type Plan struct {
	// Table is the table's name; the family is always inet.
	Table string `json:"table"`
	// Create is true when the table does not exist: the batch creates it
	// whole.
	Create bool `json:"create"`
	// Repair is true when the table no longer held what ftpnft last
	// applied to it (changed by hand or by another program): the steps
	// undo that too.
	Repair bool `json:"repair"`
	// Counts say how many things the steps change.
	Counts Counts `json:"counts"`

	steps []step
}

// Counts are how many things of each kind a plan changes. A set element
// is a range of addresses, as nft lists them.
type Counts struct {
	RulesAdded      int `json:"rules_added"`
	RulesDeleted    int `json:"rules_deleted"`
	RulesReplaced   int `json:"rules_replaced"`
	ElementsAdded   int `json:"elements_added"`
	ElementsDeleted int `json:"elements_deleted"`
	SetsAdded       int `json:"sets_added"`
	SetsDeleted     int `json:"sets_deleted"`
	ChainsAdded     int `json:"chains_added"`
	ChainsDeleted   int `json:"chains_deleted"`
	PoliciesChanged int `json:"policies_changed"`
	HelpersAdded    int `json:"helpers_added"`
	HelpersDeleted  int `json:"helpers_deleted"`
}

// String lists the non-zero counts, such as "2 rules added, 1 set element
// deleted"; "nothing" when all are zero.
func (c Counts) String() string {
	var parts []string
	for _, n := range []struct {
		n         int
		one, many string
	}{
		{c.RulesAdded, "rule added", "rules added"}, {c.RulesDeleted, "rule deleted", "rules deleted"},
		{c.RulesReplaced, "rule replaced", "rules replaced"},
		{c.ElementsAdded, "set element added", "set elements added"},
		{c.ElementsDeleted, "set element deleted", "set elements deleted"},
		{c.SetsAdded, "set added", "sets added"}, {c.SetsDeleted, "set deleted", "sets deleted"},
		{c.ChainsAdded, "chain added", "chains added"}, {c.ChainsDeleted, "chain deleted", "chains deleted"},
		{c.PoliciesChanged, "chain policy changed", "chain policies changed"},
		{c.HelpersAdded, "ct helper added", "ct helpers added"}, {c.HelpersDeleted, "ct helper deleted", "ct helpers deleted"},
	} {
		switch n.n {
		case 0:
		case 1:
			parts = append(parts, "1 "+n.one)
		default:
			parts = append(parts, fmt.Sprintf("%d %s", n.n, n.many))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// Empty reports whether the plan sends nothing: the kernel holds the
// ruleset already.
func (p *Plan) Empty() bool { return len(p.steps) == 0 }

// Steps returns the plan's steps in nft syntax, one command each, in batch
// order: "delete rule inet ftpnft input handle 9", "add element inet
// ftpnft ftp-sources4 { 10.1.0.0/16 }". The step that writes the stamp
// shows as a comment, since nft has no syntax for its user data. Saved to
// a file, the steps are what `nft -f` would need to make the same change
// (a table to create shows as a whole table block).
func (p *Plan) Steps() []string {
	out := make([]string, len(p.steps))
	for i, s := range p.steps {
		out[i] = s.text()
	}
	return out
}

// A step is one change: its text for people and the messages it queues.
type step struct {
	text func() string
	send func(b *batch) error
}

// The phases of a batch. Things are deleted before what replaces them is
// added; rules that refer to a chain, set or object go before it does and
// come after it is added again.
const (
	phaseDeleteRules = iota // also the rules of chains that go
	phaseDeleteChains
	phaseDeleteSets // sets and objects
	phaseAdd        // objects, sets, elements, chains, policies
	phaseRules      // rules added and replaced
	phaseStamp
	phases
)

// planner builds a Plan.
type planner struct {
	p      *Plan
	rs     *Ruleset
	table  *nftables.Table
	stamp  []byte // the stamp this batch writes
	phases [phases][]step
	// gone names what the batch deletes, or deletes and adds again:
	// "chain NAME", "set NAME", "object NAME". A rule that refers to one
	// is deleted, not replaced, since the kernel refuses to delete what a
	// rule still refers to.
	gone map[string]bool
}

// newPlan plans the batch that makes the kernel, which holds cur (nil when
// the table does not exist), hold rs, with fingerprint fp, and leaves the
// stamp st.
func newPlan(cur *installed, rs *Ruleset, fp fingerprint, st []byte) *Plan {
	pl := &planner{
		p:     &Plan{Table: rs.Table},
		rs:    rs,
		table: &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table},
		stamp: st,
		gone:  map[string]bool{},
	}
	switch {
	case cur == nil:
		pl.p.Create = true
		pl.whole()
	case cur.fingerprint == fp && cur.stamp == fp && cur.stampIntact():
		// The kernel holds rs; at most the stamp's generation is older
		// than the last commit, and writing it would be a commit of its
		// own.
		return pl.p
	case cur.fingerprint == fp:
		// The kernel holds rs, but its stamp was lost or changed, or it
		// never had one (loaded from the text of Render): the stamp
		// alone is written.
		pl.p.Repair = cur.hasStamp
		pl.writeStamp(cur)
	default:
		pl.p.Repair = cur.modified()
		pl.update(cur)
	}
	for _, ph := range pl.phases {
		pl.p.steps = append(pl.p.steps, ph...)
	}
	return pl.p
}

func (pl *planner) add(phase int, text func() string, send func(b *batch) error) {
	pl.phases[phase] = append(pl.phases[phase], step{text, send})
}

// whole creates the table with everything in it.
func (pl *planner) whole() {
	rs, table := pl.rs, pl.table
	pl.add(phaseAdd, func() string {
		var s strings.Builder
		rs.render(&s)
		return strings.TrimSuffix(s.String(), "\n")
	}, func(b *batch) error {
		if err := b.add(tableMessage(rs.Table, pl.stamp)); err != nil {
			return err
		}
		return enqueue(b, rs, table)
	})
	pl.addStampChain()
	c := &pl.p.Counts
	c.HelpersAdded = len(rs.Helpers)
	c.SetsAdded = len(rs.Sets)
	c.ChainsAdded = len(rs.Chains)
	for _, s := range rs.Sets {
		c.ElementsAdded += len(s.Ranges)
	}
	for _, ch := range rs.Chains {
		c.RulesAdded += len(ch.Rules)
	}
}

// update changes the table cur in place into the wanted ruleset.
func (pl *planner) update(cur *installed) {
	pairByName(cur.Helpers, pl.rs.Helpers, func(h Helper) string { return h.Name },
		func(want, got Helper, ok bool) {
			if ok && got == want {
				return
			}
			if ok {
				pl.deleteHelper(got)
			}
			pl.addHelper(want)
		},
		pl.deleteHelper)

	pairByName(cur.Sets, pl.rs.Sets, func(s Set) string { return s.Name },
		func(want, got Set, ok bool) {
			switch {
			case !ok:
				pl.addSet(want)
			case got.definition() != want.definition():
				pl.deleteSet(got)
				pl.addSet(want)
			case want.holdsRanges():
				pl.changeElements(want.Name, got.Ranges, want.Ranges)
			}
		},
		pl.deleteSet)

	// Chains first, rules after: which rules must go depends on what
	// the batch deletes.
	type keptChain struct {
		want Chain
		got  []*nftables.Rule
	}
	var kept []keptChain
	pairByName(cur.Chains, pl.rs.installedChains(), func(ic installedChain) string { return ic.Name },
		func(want, got installedChain, ok bool) {
			switch {
			case !ok:
				pl.addChain(want.Chain)
			case got.Type != want.Type || got.Hook != want.Hook || got.Priority != want.Priority:
				pl.deleteChain(got.Name)
				pl.addChain(want.Chain)
			default:
				if got.Policy != want.Policy {
					pl.changePolicy(want.Chain)
				}
				kept = append(kept, keptChain{want.Chain, got.rules})
			}
		},
		func(got installedChain) { pl.deleteChain(got.Name) })
	for _, k := range kept {
		pl.changeRules(k.want, k.got)
	}
	pl.writeStamp(cur)
}

// writeStamp replaces the stamp rule by handle, or makes the stamp chain
// anew when it is missing or holds more than the stamp.
func (pl *planner) writeStamp(cur *installed) {
	if cur.stampIntact() {
		h := cur.stampHandle
		pl.add(phaseStamp, pl.stampText, func(b *batch) error {
			b.ReplaceRule(&nftables.Rule{Table: pl.table, Chain: &nftables.Chain{Name: stampChain, Table: pl.table},
				Handle: h, Exprs: []expr.Any{}, UserData: stampRuleData(pl.stamp)})
			return nil
		})
		return
	}
	if cur.stampChain {
		// Rules added to it by hand, or its stamp lost: made anew.
		pl.add(phaseDeleteChains, func() string { return fmt.Sprintf("delete chain inet %s %s", pl.rs.Table, stampChain) },
			func(b *batch) error { b.DelChain(&nftables.Chain{Name: stampChain, Table: pl.table}); return nil })
	}
	pl.addStampChain()
}

func (pl *planner) stampText() string {
	return fmt.Sprintf("# and the stamp in chain %s: the digest of the ruleset, for status", stampChain)
}

// addStampChain adds the stamp chain and its rule.
func (pl *planner) addStampChain() {
	pl.add(phaseStamp, pl.stampText, func(b *batch) error {
		ch := b.AddChain(&nftables.Chain{Name: stampChain, Table: pl.table})
		b.AddRule(&nftables.Rule{Table: pl.table, Chain: ch, Exprs: []expr.Any{}, UserData: stampRuleData(pl.stamp)})
		return nil
	})
}

func (pl *planner) addHelper(h Helper) {
	pl.p.Counts.HelpersAdded++
	pl.add(phaseAdd, func() string {
		return fmt.Sprintf("add ct helper inet %s %s { type %q protocol %s; l3proto inet; }", pl.rs.Table, h.Name, h.Type, h.Protocol)
	}, func(b *batch) error {
		b.AddObj(helperObject(pl.table, h))
		return nil
	})
}

func (pl *planner) deleteHelper(h Helper) {
	pl.p.Counts.HelpersDeleted++
	pl.gone["object "+h.Name] = true
	typ := uint32(nftables.ObjTypeCtHelper)
	text := fmt.Sprintf("delete ct helper inet %s %s", pl.rs.Table, h.Name)
	if h.objType != 0 {
		typ = h.objType
		text = fmt.Sprintf("# delete object %s (%s) of table inet %s", h.Name, h.Type, pl.rs.Table)
	}
	pl.add(phaseDeleteSets, func() string { return text }, func(b *batch) error {
		b.DeleteObject(&nftables.NamedObj{Table: pl.table, Name: h.Name, Type: nftables.ObjType(typ)})
		return nil
	})
}

func (pl *planner) addSet(s Set) {
	pl.p.Counts.SetsAdded++
	pl.p.Counts.ElementsAdded += len(s.Ranges)
	pl.add(phaseAdd, func() string {
		text := fmt.Sprintf("add set inet %s %s %s", pl.rs.Table, s.Name, s.declaration())
		if len(s.Ranges) > 0 {
			text += "\n" + elementsText("add", pl.rs.Table, s.Name, s.Ranges)
		}
		return text
	}, func(b *batch) error { return addSet(b, pl.table, s) })
}

func (pl *planner) deleteSet(s Set) {
	pl.p.Counts.SetsDeleted++
	pl.gone["set "+s.Name] = true
	pl.add(phaseDeleteSets, func() string { return fmt.Sprintf("delete set inet %s %s", pl.rs.Table, s.Name) },
		func(b *batch) error {
			b.DelSet(&nftables.Set{Table: pl.table, Name: s.Name})
			return nil
		})
}

// changeElements deletes the ranges of set that the configuration no longer
// has, then adds the new ones. Ranges are deleted and added whole, start
// and end: the kernel takes an interval set's elements one by one and
// refuses, as overlapping, a range end added inside another range. The
// interval end at the zero address that nft puts first is added when the
// new ranges want it and the old ones did not, and never deleted: whether
// the kernel holds it cannot be told from the ranges (nft delete element
// of a range from 0 leaves none), and beside a range that starts at zero
// it does no harm.
func (pl *planner) changeElements(set string, got, want []AddrRange) {
	del, add := rangeChanges(got, want)
	_, hadZero := zeroEnd(got)
	newZero, hasZero := zeroEnd(want)
	delEls := rangeElements(del)
	var addEls []element
	if hasZero && !hadZero {
		addEls = append(addEls, newZero)
	}
	addEls = append(addEls, rangeElements(add)...)
	if len(delEls) == 0 && len(addEls) == 0 {
		return
	}
	pl.p.Counts.ElementsDeleted += len(del)
	pl.p.Counts.ElementsAdded += len(add)
	pl.add(phaseAdd, func() string {
		var lines []string
		if len(del) > 0 {
			lines = append(lines, elementsText("delete", pl.rs.Table, set, del))
		}
		if len(add) > 0 {
			lines = append(lines, elementsText("add", pl.rs.Table, set, add))
		}
		if len(lines) == 0 { // only the leading interval end nft adds
			lines = append(lines, fmt.Sprintf("# the interval end at the start of set %s", set))
		}
		return strings.Join(lines, "\n")
	}, func(b *batch) error {
		if err := addElements(b, elementsDelete, pl.rs.Table, set, delEls); err != nil {
			return err
		}
		return addElements(b, elementsAdd, pl.rs.Table, set, addEls)
	})
}

// elementsText is an nft command that adds or deletes ranges of a set.
func elementsText(verb, table, set string, ranges []AddrRange) string {
	items := make([]string, len(ranges))
	for i, r := range ranges {
		items[i] = r.String()
	}
	return fmt.Sprintf("%s element inet %s %s { %s }", verb, table, set, strings.Join(items, ", "))
}

func (pl *planner) addChain(ch Chain) {
	pl.p.Counts.ChainsAdded++
	pl.add(phaseAdd, func() string { return fmt.Sprintf("add chain inet %s %s%s", pl.rs.Table, ch.Name, chainSpec(ch)) },
		func(b *batch) error {
			addChain(b, pl.table, ch)
			return nil
		})
	for _, r := range ch.Rules {
		pl.p.Counts.RulesAdded++
		pl.add(phaseRules, func() string { return fmt.Sprintf("add rule inet %s %s %s", pl.rs.Table, ch.Name, ruleText(r)) },
			func(b *batch) error {
				b.AddRule(pl.rule(ch.Name, r))
				return nil
			})
	}
}

// deleteChain deletes a chain, after flushing it with the rules: a chain
// that goes may jump to another that goes, and the kernel refuses to
// delete a chain that a rule still jumps to, whatever the order of the
// deletes.
func (pl *planner) deleteChain(name string) {
	pl.p.Counts.ChainsDeleted++
	pl.gone["chain "+name] = true
	pl.add(phaseDeleteRules, func() string { return fmt.Sprintf("flush chain inet %s %s", pl.rs.Table, name) },
		func(b *batch) error {
			b.FlushChain(&nftables.Chain{Name: name, Table: pl.table})
			return nil
		})
	pl.add(phaseDeleteChains, func() string { return fmt.Sprintf("delete chain inet %s %s", pl.rs.Table, name) },
		func(b *batch) error {
			b.DelChain(&nftables.Chain{Name: name, Table: pl.table})
			return nil
		})
}

// changePolicy sets a base chain's policy in place: the kernel changes
// the policy of a chain that exists, as long as the hook and priority it
// is given are the ones it has.
func (pl *planner) changePolicy(ch Chain) {
	pl.p.Counts.PoliciesChanged++
	pl.add(phaseAdd, func() string { return fmt.Sprintf("add chain inet %s %s%s", pl.rs.Table, ch.Name, chainSpec(ch)) },
		func(b *batch) error {
			addChain(b, pl.table, ch)
			return nil
		})
}

// chainSpec is a base chain's specification in nft syntax, with a leading
// space; "" for a regular chain.
func chainSpec(ch Chain) string {
	if ch.Hook == "" {
		return ""
	}
	return fmt.Sprintf(" { type %s hook %s priority %s; policy %s; }", ch.Type, ch.Hook, priorityText(ch.Type, ch.Priority), ch.Policy)
}

func (pl *planner) rule(chain string, r Rule) *nftables.Rule {
	return &nftables.Rule{Table: pl.table, Chain: &nftables.Chain{Name: chain, Table: pl.table}, Exprs: r.exprs(), UserData: r.userData()}
}

// changeRules makes the rules got of a chain that stays into the wanted
// ones. The longest run of rules that both have in the same order stays
// as it is: those rules keep their handles and counters. Of the rest,
// a rule that has the comment of a wanted one in the same place is
// replaced by handle (in place, in one message); the others are deleted,
// and the wanted ones inserted after the rule they follow.
func (pl *planner) changeRules(ch Chain, got []*nftables.Rule) {
	gotFP := installedRules(installedChain{rules: got})
	gotKeys := make([]string, len(got))
	forced := make([]bool, len(got))
	for i, r := range gotFP {
		gotKeys[i] = r.key()
		forced[i] = pl.refersToGone(got[i])
	}
	wantKeys := make([]string, len(ch.Rules))
	for i, r := range desiredRules(installedChain{Chain: ch}) {
		wantKeys[i] = r.key()
	}
	match := alignRules(gotKeys, wantKeys, forced)

	// In each gap between kept rules, pair by comment, in order.
	replaced := make([]int, len(ch.Rules)) // the got rule each wanted one replaces, or -1
	taken := make([]bool, len(got))
	for j, i := range match {
		replaced[j] = -1
		if i >= 0 {
			taken[i] = true
		}
	}
	for j := 0; j < len(ch.Rules); {
		if match[j] >= 0 {
			j++
			continue
		}
		lo := -1 // the got rules between the kept rules around this gap
		for k := j - 1; k >= 0; k-- {
			if match[k] >= 0 {
				lo = match[k]
				break
			}
		}
		end := j
		for end < len(ch.Rules) && match[end] < 0 {
			end++
		}
		hi := len(got)
		if end < len(ch.Rules) {
			hi = match[end]
		}
		next := lo + 1
		for ; j < end; j++ {
			for i := next; i < hi; i++ {
				comment, ours := gotFP[i].comment()
				if !taken[i] && !forced[i] && ours && comment == ch.Rules[j].Comment {
					replaced[j], taken[i], next = i, true, i+1
					break
				}
			}
		}
	}

	for i, r := range got {
		if taken[i] {
			continue
		}
		pl.p.Counts.RulesDeleted++
		h, comment := r.Handle, commentOf(r.UserData)
		pl.add(phaseDeleteRules, func() string {
			text := fmt.Sprintf("delete rule inet %s %s handle %d", pl.rs.Table, ch.Name, h)
			if comment != "" {
				text += fmt.Sprintf(" # %q", comment)
			}
			return text
		}, func(b *batch) error {
			return b.DelRule(&nftables.Rule{Table: pl.table, Chain: &nftables.Chain{Name: ch.Name, Table: pl.table}, Handle: h})
		})
	}

	// New rules go after the rule before them that stays (or is
	// replaced), or at the head of the chain; several after one rule are
	// sent last first, each right after it.
	var anchor uint64
	var run []Rule
	flush := func() {
		for k := len(run) - 1; k >= 0; k-- {
			pl.insertRule(ch.Name, anchor, run[k])
		}
		run = nil
	}
	for j, r := range ch.Rules {
		i := match[j]
		if i < 0 && replaced[j] >= 0 {
			i = replaced[j]
			pl.replaceRule(ch.Name, got[i].Handle, r)
		}
		if i < 0 {
			run = append(run, r)
			continue
		}
		flush()
		anchor = got[i].Handle
	}
	flush()
}

// insertRule adds r after the rule with handle after, or at the head of
// the chain when after is 0.
func (pl *planner) insertRule(chain string, after uint64, r Rule) {
	pl.p.Counts.RulesAdded++
	pl.add(phaseRules, func() string {
		if after == 0 {
			return fmt.Sprintf("insert rule inet %s %s %s", pl.rs.Table, chain, ruleText(r))
		}
		return fmt.Sprintf("add rule inet %s %s position %d %s", pl.rs.Table, chain, after, ruleText(r))
	}, func(b *batch) error {
		nr := pl.rule(chain, r)
		if after == 0 {
			b.InsertRule(nr)
			return nil
		}
		nr.Position = after
		b.AddRule(nr)
		return nil
	})
}

func (pl *planner) replaceRule(chain string, handle uint64, r Rule) {
	pl.p.Counts.RulesReplaced++
	pl.add(phaseRules, func() string {
		return fmt.Sprintf("replace rule inet %s %s handle %d %s", pl.rs.Table, chain, handle, ruleText(r))
	}, func(b *batch) error {
		nr := pl.rule(chain, r)
		nr.Handle = handle
		b.ReplaceRule(nr)
		return nil
	})
}

// refersToGone reports whether r jumps to a chain, looks up a set or names
// an object that the batch deletes.
func (pl *planner) refersToGone(r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		var ref string
		switch e := e.(type) {
		case *expr.Verdict:
			if e.Chain != "" {
				ref = "chain " + e.Chain
			}
		case *expr.Lookup:
			ref = "set " + e.SetName
		case *expr.Dynset:
			ref = "set " + e.SetName
		case *expr.Objref:
			ref = "object " + e.Name
		}
		if pl.gone[ref] {
			return true
		}
	}
	return false
}

// alignRules finds the longest common subsequence of the keys of the rules
// a chain has and of those it should have; forced rules take no part. It
// returns, for each wanted rule, the index of the rule it keeps, or -1.
func alignRules(got, want []string, forced []bool) []int {
	match := make([]int, len(want))
	for j := range match {
		match[j] = -1
	}
	same := func(i, j int) bool { return !forced[i] && got[i] == want[j] }
	// The common head and tail need no table: most changes are small.
	lo := 0
	for lo < len(got) && lo < len(want) && same(lo, lo) {
		match[lo] = lo
		lo++
	}
	gHi, wHi := len(got), len(want)
	for gHi > lo && wHi > lo && same(gHi-1, wHi-1) {
		gHi--
		wHi--
		match[wHi] = gHi
	}
	n, m := gHi-lo, wHi-lo
	if n == 0 || m == 0 {
		return match
	}
	// lcs[i][j] is the length of the longest common subsequence of
	// got[lo+i:gHi] and want[lo+j:wHi].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if same(lo+i, lo+j) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case same(lo+i, lo+j):
			match[lo+j] = lo + i
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			i++
		default:
			j++
		}
	}
	return match
}
