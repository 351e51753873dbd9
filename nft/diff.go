package nft

import (
	"fmt"
	"slices"

	"github.com/ftpnft/ftpnft/internal/input"
)

// maxDifferences bounds how many differences status lists: a table that
// was flushed by hand differs in every rule, and a few say enough.
const maxDifferences = 20

// differences lists, in nft's words, how the table cur differs from want:
// what was changed by hand, or what an install of want would change.
// Objects, sets and chains are matched by name, rules by their content.
func differences(cur *installed, want *Ruleset) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }

	curHelpers := map[string]Helper{}
	for _, h := range cur.Helpers {
		curHelpers[h.Name] = h
	}
	for _, h := range want.Helpers {
		got, ok := curHelpers[h.Name]
		delete(curHelpers, h.Name)
		switch {
		case !ok:
			add("ct helper %s missing", h.Name)
		case got != h:
			add("ct helper %s: type %q protocol %s, want type %q protocol %s", h.Name, got.Type, got.Protocol, h.Type, h.Protocol)
		}
	}
	for _, h := range cur.Helpers {
		if _, extra := curHelpers[h.Name]; extra {
			add("ct helper %s is not in the configuration", h.Name)
		}
	}

	curSets := map[string]Set{}
	for _, s := range cur.Sets {
		curSets[s.Name] = s
	}
	for _, s := range want.Sets {
		got, ok := curSets[s.Name]
		delete(curSets, s.Name)
		switch {
		case !ok:
			add("set %s missing", s.Name)
		case got.keyType() != s.keyType() || got.flags() != s.flags() || got.Timeout != s.Timeout || got.Size != s.Size:
			add("set %s: type %s flags %q, want type %s flags %q", s.Name, got.keyType(), got.flags(), s.keyType(), s.flags())
		case !slices.Equal(got.Ranges, s.Ranges):
			missing, extra := rangeDifference(s.Ranges, got.Ranges), rangeDifference(got.Ranges, s.Ranges)
			add("set %s: %d ranges missing, %d not in the configuration", s.Name, missing, extra)
		}
	}
	for _, s := range cur.Sets {
		if _, extra := curSets[s.Name]; extra {
			add("set %s is not in the configuration", s.Name)
		}
	}

	curChains := map[string]installedChain{}
	for _, ch := range cur.Chains {
		curChains[ch.Name] = ch
	}
	for _, ch := range want.Chains {
		got, ok := curChains[ch.Name]
		delete(curChains, ch.Name)
		switch {
		case !ok:
			add("chain %s missing", ch.Name)
			continue
		case got.Type != ch.Type || got.Hook != ch.Hook || got.Priority != ch.Priority:
			add("chain %s: type %q hook %q priority %d, want type %q hook %q priority %d",
				ch.Name, got.Type, got.Hook, got.Priority, ch.Type, ch.Hook, ch.Priority)
		case got.Policy != ch.Policy:
			add("chain %s: policy %s, want %s", ch.Name, got.Policy, ch.Policy)
		}
		d = append(d, ruleDifferences(ch.Name, installedRules(got), desiredRules(installedChain{Chain: ch}))...)
	}
	for _, ch := range cur.Chains {
		if _, extra := curChains[ch.Name]; extra {
			add("chain %s is not in the configuration", ch.Name)
		}
	}

	if len(d) > maxDifferences {
		d = append(d[:maxDifferences-1], fmt.Sprintf("… and %d more", len(d)-maxDifferences+1))
	}
	return d
}

// ruleDifferences compares the rules of one chain: those missing, those
// that differ from the configuration's rule of the same comment, those
// that are not in the configuration (added by hand: named by their
// handle), and rules that are all there but in another order.
func ruleDifferences(chain string, got, want []ruleFP) []string {
	wanted := map[string]int{}
	for _, r := range want {
		wanted[r.key()]++
	}
	var extra []ruleFP
	for _, r := range got {
		if k := r.key(); wanted[k] > 0 {
			wanted[k]--
		} else {
			extra = append(extra, r)
		}
	}
	var d []string
	for _, r := range want {
		k := r.key()
		if wanted[k] == 0 {
			continue
		}
		wanted[k]--
		comment, _ := r.comment()
		i := slices.IndexFunc(extra, func(x ruleFP) bool { c, ours := x.comment(); return ours && c == comment })
		if i >= 0 {
			d = append(d, fmt.Sprintf("chain %s: rule %s differs", chain, input.Quote(comment)))
			extra = slices.Delete(extra, i, i+1)
			continue
		}
		d = append(d, fmt.Sprintf("chain %s: rule %s missing", chain, input.Quote(comment)))
	}
	for _, r := range extra {
		switch comment, ours := r.comment(); {
		case ours:
			d = append(d, fmt.Sprintf("chain %s: rule %s (handle %d) is not in the configuration", chain, input.Quote(comment), r.handle))
		case comment != "":
			d = append(d, fmt.Sprintf("chain %s: rule handle %d with comment %s is not ftpnft's", chain, r.handle, input.Quote(comment)))
		default:
			d = append(d, fmt.Sprintf("chain %s: rule handle %d is not ftpnft's", chain, r.handle))
		}
	}
	if len(d) == 0 && len(got) == len(want) {
		for i := range got {
			if got[i].key() != want[i].key() {
				return []string{fmt.Sprintf("chain %s: rules in another order", chain)}
			}
		}
	}
	return d
}

// rangeDifference counts the ranges of a that b lacks.
func rangeDifference(a, b []AddrRange) int {
	in := make(map[AddrRange]bool, len(b))
	for _, r := range b {
		in[r] = true
	}
	n := 0
	for _, r := range a {
		if !in[r] {
			n++
		}
	}
	return n
}
